"""Shared pieces of the model builders: input validation, preprocessing layers and the head.

Layer-naming conventions (every zoo model):

* ``input``            the ``keras.Input`` (float32 images in [0, 1], shape ``input_shape``);
* ``pre_*``            preprocessing: ``pre_resize`` (upsampling of small inputs), ``pre_gray2rgb``
                       (1 → 3 channels), ``pre_adapter`` (learned 1×1 conv for other channel counts),
                       ``pre_scale`` (the backbone's expected value range);
* backbone blocks      the builder's own names (``block1_*`` … for small_cnn, ``conv1_*`` … ``fc7_*``
                       for alexnet, keras.applications' names for the others) followed by
                       ``backbone_gap`` for keras.applications backbones;
* ``head_*``           ``head_dropout``, ``head_dense`` (num_classes units), ``head_softmax``
                       (``Activation("softmax", dtype="float32")`` so mixed precision works).
"""

from __future__ import annotations

from aift_tf.errors import AiftError


def check_input_shape(input_shape) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in input_shape)
        ok = len(shape) == 3 and all(int(v) == v for v in input_shape)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise AiftError(f"input_shape {input_shape!r}: expected (height, width, channels) of positive ints")
    if min(shape) < 1:
        raise AiftError(f"input_shape {input_shape!r}: every dimension must be >= 1")
    return shape


def check_num_classes(num_classes) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) and not (
        hasattr(num_classes, "__index__")
    ):
        raise AiftError(f"num_classes {num_classes!r}: expected an int >= 2")
    k = int(num_classes)
    if k < 2:
        raise AiftError(f"num_classes {num_classes!r}: expected an int >= 2 (binary tasks use 2)")
    return k


def check_dropout(dropout) -> float:
    try:
        d = float(dropout)
    except (TypeError, ValueError):
        raise AiftError(f"dropout {dropout!r}: expected a float in [0, 1)") from None
    if not 0.0 <= d < 1.0:
        raise AiftError(f"dropout {dropout!r}: expected a float in [0, 1)")
    return d


def resize_if_smaller(x, input_shape, min_size: int):
    """Upsample (bilinear) so that height and width are at least ``min_size`` (layer ``pre_resize``)."""
    from aift_tf.zoo.layers import ResizeTo

    h, w = input_shape[0], input_shape[1]
    if h >= min_size and w >= min_size:
        return x
    return ResizeTo(max(h, min_size), max(w, min_size), name="pre_resize")(x)


def to_rgb(x, channels: int, *, allow_adapter: bool = True, seed=None):
    """1 channel → repeated to RGB (``pre_gray2rgb``); 3 → unchanged; others → learned 1×1 conv
    ``pre_adapter`` (only without ImageNet weights)."""
    import keras

    if channels == 3:
        return x
    if channels == 1:
        return keras.layers.Concatenate(axis=-1, name="pre_gray2rgb")([x, x, x])
    if not allow_adapter:
        raise AiftError(f"{channels} input channels: ImageNet backbones take 1 or 3 channels")
    return keras.layers.Conv2D(3, 1, name="pre_adapter",
                               kernel_initializer=keras.initializers.GlorotUniform(seed=seed))(x)


def head(x, num_classes: int, dropout: float, seed=None):
    """Dropout + Dense(num_classes) + float32 softmax, named ``head_*``."""
    import keras

    x = keras.layers.Dropout(dropout, seed=seed, name="head_dropout")(x)
    x = keras.layers.Dense(num_classes, name="head_dense",
                           kernel_initializer=keras.initializers.GlorotUniform(seed=seed))(x)
    return keras.layers.Activation("softmax", dtype="float32", name="head_softmax")(x)
