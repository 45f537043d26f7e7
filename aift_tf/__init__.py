"""aift-tf: active, incremental fine-tuning (AIFT) of pre-trained CNNs for biomedical images.

Importing the package is cheap: TensorFlow is imported only by the modules that need a model
(``pipelines``, ``zoo``, ``finetune``, ``learner``, ``export``).
"""

__version__ = "0.1.0"

from aift_tf.errors import AiftError, StoreError  # noqa: E402,F401
