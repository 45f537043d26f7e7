"""``small_cnn``: a fast CPU model for simulations and tests.

Four conv blocks ``block{i}_conv`` (3×3, no bias) → ``block{i}_bn`` → ``block{i}_relu`` →
``block{i}_pool`` (2×2 max-pool; block 4 ends in ``block4_gap``, global average pooling), then the
standard head (``head_dropout``, ``head_dense``, ``head_softmax``). Any channel count is taken as is;
inputs smaller than 8×8 are upsampled (``pre_resize``). ``backbone_shape`` (an M0 pre-trained on another
patch shape) adds ``pre_resize`` to its size and ``pre_gray2rgb`` (1 → 3 channels) in front of the blocks.
``filters`` sets the block widths (default 32-64-128-128); ``width`` multiplies them.
"""

from __future__ import annotations

from aift_tf.zoo import _common

DEFAULT_FILTERS = (32, 64, 128, 128)
MIN_SIZE = 8


def build(input_shape, num_classes, *, dropout=0.5, seed=None, filters=DEFAULT_FILTERS, width=1.0,
          backbone_shape=None):
    import keras
    from keras import layers

    from aift_tf.errors import AiftError

    filters = tuple(filters)
    if len(filters) != 4 or float(width) <= 0:
        raise AiftError(f"small_cnn filters {filters!r} / width {width!r}: need 4 filter counts and width > 0")
    filters = tuple(max(1, int(round(f * float(width)))) for f in filters)
    init = keras.initializers.HeNormal(seed=seed)

    inp = keras.Input(shape=input_shape, name="input")
    x = _common.backbone_input(inp, input_shape, MIN_SIZE, backbone_shape)
    for i, f in enumerate(filters, start=1):
        x = layers.Conv2D(f, 3, padding="same", use_bias=False, kernel_initializer=init,
                          name=f"block{i}_conv")(x)
        x = layers.BatchNormalization(name=f"block{i}_bn")(x)
        x = layers.ReLU(name=f"block{i}_relu")(x)
        if i < 4:
            x = layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
        else:
            x = layers.GlobalAveragePooling2D(name="block4_gap")(x)
    out = _common.head(x, num_classes, dropout, seed=seed)
    return keras.Model(inp, out, name="small_cnn")


def cuts(model):
    """Clean single-tensor cut points (layer names, shallow → deep) and the one before the top block."""
    return ["block1_pool", "block2_pool", "block3_pool", "block4_gap"], "block3_pool"


def options(model) -> dict:
    """Builder options recoverable from a built (or reloaded) model."""
    out = {"filters": [model.get_layer(f"block{i}_conv").filters for i in range(1, 5)]}
    return _common.with_backbone_shape(out, model, MIN_SIZE)
