"""Shared pieces of the model builders: input validation, preprocessing layers and the head.

Layer-naming conventions (every zoo model):

* ``input``            the ``keras.Input`` (float32 images in [0, 1], shape ``input_shape``);
* ``pre_*``            preprocessing: ``pre_resize`` (upsampling of small inputs, or resizing to an
                       M0's pre-training size), ``pre_gray2rgb``
                       (1 → 3 channels), ``pre_adapter`` (learned 1×1 conv for other channel counts),
                       ``pre_scale`` (the backbone's expected value range);
* backbone blocks      the builder's own names (``block1_*`` … for small_cnn, ``conv1_*`` … ``fc7_*``
                       for alexnet, keras.applications' names for the others) followed by
                       ``backbone_gap`` for keras.applications backbones;
* ``head_*``           ``head_dropout``, ``head_dense`` (num_classes units), ``head_softmax``
                       (``Activation("softmax", dtype="float32")`` so mixed precision works).
"""

from __future__ import annotations

from aift_tf.checks import check_int, check_number
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


def check_backbone_shape(backbone_shape, input_shape, rgb: bool = False) -> tuple[int, int, int]:
    """Validate ``backbone_shape`` for ``input_shape`` inputs (channels equal or 1 → 3; ``rgb``: the
    backbone always takes 3 channels, mapped by :func:`to_rgb`, so only 3 is accepted)."""
    try:
        shape = check_input_shape(backbone_shape)
    except AiftError:
        raise AiftError(f"backbone_shape {backbone_shape!r}: expected (height, width, channels) of "
                        f"positive ints") from None
    c, bc = int(input_shape[2]), shape[2]
    if (bc != 3) if rgb else not can_adapt_channels(c, bc):
        raise AiftError(f"backbone_shape {backbone_shape!r}: {c} input channel(s) cannot feed a backbone of "
                        f"{bc} (equal or 1 -> 3{'; this backbone takes 3' if rgb else ''})")
    return shape


def check_num_classes(num_classes) -> int:
    return check_int(num_classes, "num_classes", 2)


def check_dropout(dropout) -> float:
    return check_number(dropout, "dropout", 0, 1, high_open=True, coerce=True)


def backbone_input(x, input_shape, min_size: int, backbone_shape=None, *, channels: bool = True):
    """Adapt the input tensor to what the backbone expects: ``pre_resize``, then ``pre_gray2rgb``.

    Args:
        x: the input tensor, shape ``input_shape``.
        input_shape: (H, W, C) of the model's input.
        min_size: the backbone's minimum height/width (smaller images are upsampled).
        backbone_shape: (H', W', C') the backbone was pre-trained on (an M0 of another shape), or
            ``None`` = ``input_shape``. Height and width are resized to (max(H', min_size),
            max(W', min_size)) (bilinear; antialiased when shrinking); C = 1 → C' = 3 repeats the channel.
        channels: ``False`` leaves the channels alone (the caller maps them, e.g. :func:`to_rgb`).

    Example: ``backbone_input(inp, (28, 28, 1), 8, (32, 32, 3))`` → ``pre_resize`` to 32×32 then
    ``pre_gray2rgb``; ``backbone_input(inp, (4, 4, 3), 8)`` → ``pre_resize`` to 8×8.
    """
    from aift_tf.zoo.layers import ResizeTo

    h, w, c = (int(v) for v in input_shape)
    bh, bw, bc = (int(v) for v in (backbone_shape or input_shape))
    th, tw = max(bh, min_size), max(bw, min_size)
    if (th, tw) != (h, w):
        x = ResizeTo(th, tw, antialias=th < h or tw < w, name="pre_resize")(x)
    if channels and bc != c:
        if not can_adapt_channels(c, bc):
            raise AiftError(f"input_shape {tuple(input_shape)}: cannot adapt {c} channel(s) to the "
                            f"backbone's {bc} (only 1 -> 3)")
        x = gray2rgb(x)
    return x


def with_backbone_shape(options: dict, model, min_size: int, *, channels: bool = True) -> dict:
    """``options`` plus ``backbone_shape`` when ``model``'s ``pre_*`` graph is not the default one."""
    shape = recover_backbone_shape(model, min_size, channels=channels)
    return dict(options, backbone_shape=shape) if shape is not None else dict(options)


def gray2rgb(x):
    """The ``pre_gray2rgb`` layer: one channel repeated to three (a weightless Concatenate)."""
    import keras

    return keras.layers.Concatenate(axis=-1, name="pre_gray2rgb")([x, x, x])


def can_adapt_channels(channels: int, backbone_channels: int) -> bool:
    """Whether ``backbone_input`` maps ``channels`` to ``backbone_channels``: equal, or 1 → 3."""
    return int(channels) == int(backbone_channels) or (int(channels) == 1 and int(backbone_channels) == 3)


def recover_backbone_shape(model, min_size: int, *, channels: bool = True):
    """The ``backbone_shape`` option that rebuilds ``model``'s ``pre_*`` graph, or ``None`` (the default).

    Read from the graph (``pre_resize`` target, ``pre_gray2rgb`` when ``channels``), so a freshly built and
    a reloaded ``.keras`` model report the same value.
    """
    h, w, c = (int(v) for v in model.input_shape[1:])
    names = {layer.name for layer in model.layers}
    th, tw = h, w
    if "pre_resize" in names:
        resize = model.get_layer("pre_resize")
        th, tw = int(resize.height), int(resize.width)
    bc = 3 if channels and "pre_gray2rgb" in names else c
    got = (th, tw, bc)
    return None if got == (max(h, min_size), max(w, min_size), c) else list(got)


def to_rgb(x, channels: int, *, allow_adapter: bool = True, seed=None):
    """1 channel → repeated to RGB (``pre_gray2rgb``); 3 → unchanged; others → learned 1×1 conv
    ``pre_adapter`` (only without ImageNet weights)."""
    import keras

    if channels == 3:
        return x
    if channels == 1:
        return gray2rgb(x)
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
