"""Custom (weightless, serialisable) preprocessing layers of the zoo.

Registered under the package name ``aift_tf`` so ``.keras`` files reload with
``keras.models.load_model`` without ``custom_objects`` once this module is imported. Inside aift_tf every
``.keras`` file is read through :func:`load_model`, which imports this module first: a fresh process that
loads a checkpoint of a resized or grayscale store (``pre_resize`` is a :class:`ResizeTo`) needs it.
"""

from __future__ import annotations

import keras

# keras.applications "caffe" preprocessing: BGR order, ImageNet mean subtracted on a 0-255 scale.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="aift_tf")
class CaffePreprocess(keras.layers.Layer):
    """[0, 1] RGB → 0-255 BGR minus the ImageNet mean (VGG16 / ResNet50 "caffe" mode)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def call(self, inputs):
        x = keras.ops.cast(inputs, self.compute_dtype) * 255.0
        x = keras.ops.flip(x, axis=-1)
        mean = keras.ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=self.compute_dtype)
        return x - mean

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return super().get_config()


@keras.saving.register_keras_serializable(package="aift_tf")
class ResizeTo(keras.layers.Layer):
    """Resize images to (height, width) (bilinear by default), deterministic and weightless.

    ``antialias=True`` low-pass filters when shrinking (used when a large patch is resized down to an
    M0's pre-training size).

    Used instead of ``keras.layers.Resizing``: that layer's ``call(..., training=True)`` default leaks
    ``training=True`` into the Keras call context, so a plain ``model(x)`` would run every later
    BatchNormalization layer in training mode (batch statistics) — Keras 3.15 behaviour.
    """

    def __init__(self, height, width, interpolation="bilinear", antialias=False, **kwargs):
        super().__init__(**kwargs)
        self.height = int(height)
        self.width = int(width)
        self.interpolation = interpolation
        self.antialias = bool(antialias)

    def call(self, inputs):
        x = keras.ops.cast(inputs, self.compute_dtype)
        return keras.ops.image.resize(x, (self.height, self.width), interpolation=self.interpolation,
                                      antialias=self.antialias, data_format="channels_last")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(height=self.height, width=self.width, interpolation=self.interpolation,
                      antialias=self.antialias)
        return config


def load_model(path, compile: bool = False):
    """``keras.models.load_model`` with this module's layers registered (the one way aift_tf reads ``.keras``).

    Args:
        path: a ``.keras`` file.
        compile: restore the compiled optimizer and loss too (a learner checkpoint), as in Keras.

    Example:
    >>> model = load_model("proj/checkpoints/round-001/model.keras")   # a fresh process: no import needed first
    """
    return keras.models.load_model(path, compile=compile)
