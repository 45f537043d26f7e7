"""``alexnet``: the AlexNet backbone (Krizhevsky et al. 2012, as used by Zhou et al. 2017) in Keras.

Five convolutions (96, 256, 384, 384, 256 filters; 11×11/4, 5×5, 3×3, 3×3, 3×3) and three fully
connected layers (4096, 4096, K). Local response normalisation is replaced by BatchNormalization
after every convolution. No grouping (single tower).

Small inputs: the valid 11×11/4 convolution and three 3×3/2 max-pools need at least 67×67 pixels, so
smaller images are upsampled (bilinear ``pre_resize``) to at least 67×67 inside the model. Any channel
count is taken as is (there are no ImageNet weights to match). ``width`` multiplies every filter and
unit count (e.g. ``width=0.125`` for fast tests).

Layer names: ``conv{i}_conv``, ``conv{i}_bn``, ``conv{i}_relu``, ``conv{1,2,5}_pool``,
``conv5_flatten``, ``fc6_dense``, ``fc6_relu``, ``fc6_dropout``, ``fc7_dense``, ``fc7_relu`` (the top
block is fc7), then ``head_dropout``, ``head_dense`` (the paper's fc8) and ``head_softmax``.
"""

from __future__ import annotations

from aift_tf.zoo import _common

MIN_SIZE = 67
_CONVS = ((96, 11, 4, True), (256, 5, 1, True), (384, 3, 1, False), (384, 3, 1, False), (256, 3, 1, True))
_FC = 4096


def build(input_shape, num_classes, *, dropout=0.5, seed=None, width=1.0, backbone_shape=None):
    import keras
    from keras import layers

    from aift_tf.checks import check_number

    width = check_number(width, "width", 0, low_open=True, coerce=True)
    init = keras.initializers.HeNormal(seed=seed)

    inp = keras.Input(shape=input_shape, name="input")
    x = _common.backbone_input(inp, input_shape, MIN_SIZE, backbone_shape)
    for i, (f, k, s, pool) in enumerate(_CONVS, start=1):
        x = layers.Conv2D(max(1, round(f * width)), k, strides=s, padding="valid" if i == 1 else "same",
                          use_bias=False, kernel_initializer=init, name=f"conv{i}_conv")(x)
        x = layers.BatchNormalization(name=f"conv{i}_bn")(x)
        x = layers.ReLU(name=f"conv{i}_relu")(x)
        if pool:
            x = layers.MaxPooling2D(3, strides=2, name=f"conv{i}_pool")(x)
    x = layers.Flatten(name="conv5_flatten")(x)
    units = max(1, round(_FC * width))
    x = layers.Dense(units, kernel_initializer=init, name="fc6_dense")(x)
    x = layers.ReLU(name="fc6_relu")(x)
    x = layers.Dropout(dropout, seed=seed, name="fc6_dropout")(x)
    x = layers.Dense(units, kernel_initializer=init, name="fc7_dense")(x)
    x = layers.ReLU(name="fc7_relu")(x)
    out = _common.head(x, num_classes, dropout, seed=seed)
    return keras.Model(inp, out, name="alexnet")


def cuts(model):
    """Clean single-tensor cut points (shallow → deep) and the one before the top block (fc7)."""
    return (["conv1_pool", "conv2_pool", "conv3_relu", "conv4_relu", "conv5_flatten", "fc6_dropout",
             "fc7_relu"], "fc6_dropout")


def options(model) -> dict:
    width = model.get_layer("conv1_conv").filters / 96.0
    return _common.with_backbone_shape({"width": width}, model, MIN_SIZE)
