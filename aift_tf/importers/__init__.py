"""Importers: turn external data sets into AIFT candidate stores (no TensorFlow needed).

* :func:`import_npz` — MedMNIST-layout ``.npz`` archives (``train_images``/``train_labels``/…).
* :func:`import_folder` — one sub-folder per class.
* :func:`import_csv` — a CSV ``path,label[,group][,split]`` (both also read 2-D DICOM ``.dcm``).
* :func:`import_volumes` — CT/MR volumes (DICOM series, NIfTI, MetaImage) + a LUNA16-style
  candidate list → 2.5-D patches (see :mod:`aift_tf.importers.volumes` and :mod:`aift_tf.volumes`).
* :func:`make_patch_bag` / :func:`make_patch_bags` — the patch-bag augmentation every importer
  uses to turn one image into the ``m`` patches of a candidate (see :mod:`aift_tf.importers.augment`).

Every importer validates its input first (one-line :class:`~aift_tf.errors.AiftError` naming the
file / key / value), refuses an existing output unless ``overwrite=True``, and writes the store
atomically with :class:`aift_tf.store.StoreWriter`: on any error no output file is left behind.
"""

from aift_tf.importers._common import SEED_MAX, check_seed, is_store_file, same_file
from aift_tf.importers.augment import Augmentation, child_seed, make_patch_bag, make_patch_bags
from aift_tf.importers.folder import import_csv, import_folder
from aift_tf.importers.npz import import_npz, read_npz
from aift_tf.importers.volumes import import_volumes, read_candidates, read_volume

__all__ = [
    "SEED_MAX", "check_seed", "is_store_file", "same_file", "Augmentation", "child_seed", "make_patch_bag", "make_patch_bags",
    "import_npz", "read_npz", "import_folder", "import_csv", "import_volumes", "read_candidates", "read_volume",
]
