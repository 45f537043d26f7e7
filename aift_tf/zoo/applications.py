"""keras.applications backbones: vgg16, resnet50, mobilenet_v2, efficientnet_b0, densenet121.

Each model is one flat functional graph::

    input → [pre_resize] → [pre_gray2rgb | pre_adapter] → pre_scale → backbone (keras.applications,
    include_top=False, its own layer names) → backbone_gap → head_dropout → head_dense → head_softmax

* ``pre_resize``: inputs smaller than 32×32 (keras.applications' minimum) are upsampled to 32; with
  ``backbone_shape`` (weights pre-trained on another size) resized to that size.
* ``pre_gray2rgb``: 1 channel repeated to RGB; ``pre_adapter``: learned 1×1 conv to 3 channels for
  other channel counts (not allowed with ``weights="imagenet"``: AiftError).
* ``pre_scale``: the scaling keras.applications' ``preprocess_input`` expects, from [0, 1] inputs:
  "caffe" (vgg16, resnet50: RGB→BGR, ×255, minus ImageNet mean; :class:`CaffePreprocess`), "tf"
  (mobilenet_v2: ×2−1), "torch" (densenet121: ImageNet mean/std), ×255 for efficientnet_b0 (which
  has its own Rescaling + Normalization layers inside).
* ``backbone_gap``: global average pooling (same as ``pooling="avg"``, with a stable name).

The graph is built with ``weights=None`` for every weight source; ImageNet weights are loaded by
:func:`aift_tf.zoo.weights.load_imagenet` from keras.applications' own files.
"""

from __future__ import annotations

from aift_tf.zoo import _common

MIN_SIZE = 32

_CTORS = {
    "vgg16": "VGG16",
    "resnet50": "ResNet50",
    "mobilenet_v2": "MobileNetV2",
    "efficientnet_b0": "EfficientNetB0",
    "densenet121": "DenseNet121",
}

# Clean single-tensor cut points (shallow → deep); the last backbone one precedes the top block.
_CUTS = {
    "vgg16": ["block1_pool", "block2_pool", "block3_pool", "block4_pool"],
    "resnet50": ["conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block1_out",
                 "conv5_block2_out"],
    "mobilenet_v2": ["block_2_add", "block_5_add", "block_9_add", "block_12_add", "block_15_add"],
    "efficientnet_b0": ["block2b_add", "block3b_add", "block4c_add", "block5c_add", "block6d_add"],
    "densenet121": ["pool2_pool", "pool3_pool", "pool4_pool", "conv5_block15_concat"],
}

_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


def _pre_scale(name, x):
    import keras

    from aift_tf.zoo.layers import CaffePreprocess

    if name in ("vgg16", "resnet50"):
        return CaffePreprocess(name="pre_scale")(x)
    if name == "mobilenet_v2":
        return keras.layers.Rescaling(2.0, offset=-1.0, name="pre_scale")(x)
    if name == "efficientnet_b0":
        return keras.layers.Rescaling(255.0, name="pre_scale")(x)
    scale = [1.0 / s for s in _TORCH_STD]
    offset = [-m / s for m, s in zip(_TORCH_MEAN, _TORCH_STD)]
    return keras.layers.Rescaling(scale, offset=offset, name="pre_scale")(x)


def build(name, input_shape, num_classes, *, dropout=0.5, seed=None, backbone_shape=None):
    import warnings

    import keras

    inp = keras.Input(shape=input_shape, name="input")
    x = _common.backbone_input(inp, input_shape, MIN_SIZE, backbone_shape, channels=False)
    x = _common.to_rgb(x, input_shape[2], seed=seed)
    x = _pre_scale(name, x)
    ctor = getattr(keras.applications, _CTORS[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = ctor(include_top=False, weights=None, input_tensor=x, pooling=None)
    feat = keras.layers.GlobalAveragePooling2D(name="backbone_gap")(base.output)
    out = _common.head(feat, num_classes, dropout, seed=seed)
    return keras.Model(inp, out, name=name)


def cuts(model):
    c = _CUTS[model.name]
    return c + ["backbone_gap"], c[-1]


def options(model) -> dict:
    """Builder options recoverable from a built (or reloaded) model: ``backbone_shape`` if not the default."""
    return _common.with_backbone_shape({}, model, MIN_SIZE, channels=False)
