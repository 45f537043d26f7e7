"""Helpers shared by the importers: output checks, group-wise splits, streaming bag writing."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from aift_tf.errors import AiftError
from aift_tf.importers.augment import Augmentation, make_patch_bags

SPLIT_NAMES = ("train", "val", "test")  # same codes as aift_tf.store.SPLITS
DEFAULT_CHUNK = 256  # images augmented and written at once


def check_out(out_path, overwrite: bool) -> Path:
    """Refuse to replace an existing output unless ``overwrite``; the write itself stays atomic."""
    out = Path(out_path)
    if out.is_dir():
        raise AiftError(f"{out}: output is a folder, expected a .h5 file path")
    if out.exists() and not overwrite:
        raise AiftError(f"{out}: output already exists; pass --overwrite (overwrite=True) to replace it")
    if not out.parent.exists():
        raise AiftError(f"{out}: parent folder {out.parent} does not exist")
    return out


def check_int(value, name: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise AiftError(f"{name} must be an integer; got {value!r}")
    if minimum is not None and value < minimum:
        raise AiftError(f"{name} must be >= {minimum}; got {value}")
    return int(value)


def check_fractions(val_fraction, test_fraction) -> tuple[float, float]:
    out = []
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        try:
            f = float(f)
        except (TypeError, ValueError):
            raise AiftError(f"{name} must be a number in [0, 1); got {f!r}") from None
        if not (math.isfinite(f) and 0.0 <= f < 1.0):
            raise AiftError(f"{name} must be in [0, 1); got {f}")
        out.append(f)
    if out[0] + out[1] >= 1.0:
        raise AiftError(f"val_fraction + test_fraction must be < 1; got {out[0]} + {out[1]}")
    return out[0], out[1]


def common_args(m, patch_size, val_fraction, test_fraction, augmentation, aug_options, out_path, overwrite):
    """Validate the arguments every importer shares; returns (m, patch_size, val, test, augmentation, out)."""
    m = check_int(m, "m (patches per candidate)", 1)
    if patch_size is not None:
        patch_size = check_int(patch_size, "patch_size", 1)
    vf, tf = check_fractions(val_fraction, test_fraction)
    aug = make_augmentation(augmentation, aug_options)
    out = check_out(out_path, overwrite)
    return m, patch_size, vf, tf, aug, out


def make_augmentation(augmentation, options) -> Augmentation:
    if augmentation is not None:
        if options:
            raise AiftError(f"give either augmentation= or augmentation options, not both: {sorted(options)}")
        if not isinstance(augmentation, Augmentation):
            raise AiftError(f"augmentation must be an Augmentation; got {type(augmentation).__name__}")
        return augmentation
    unknown = set(options) - set(Augmentation.__dataclass_fields__)
    if unknown:
        raise AiftError(f"unknown augmentation option(s) {sorted(unknown)}; valid: "
                        f"{sorted(Augmentation.__dataclass_fields__)}")
    return Augmentation(**options)


def group_split(groups: np.ndarray, labels: np.ndarray, val_fraction: float, test_fraction: float,
                seed) -> np.ndarray:
    """Seeded split by group: every group goes wholly to one split (codes 0/1/2).

    Groups are stratified by their majority label: within each label, groups are shuffled and
    ``round(fraction · groups with that label)`` go to test, then to val; the rest stay in train. If
    a non-zero fraction gets no group at all while at least 3 groups exist, one group is moved
    there from train. Fractions are of groups, which equal candidates when every image is its own
    group.
    """
    groups = np.asarray(groups, np.int64)
    labels = np.asarray(labels, np.int64)
    rng = np.random.default_rng(seed)
    ug, inv = np.unique(groups, return_inverse=True)
    G = ug.size
    # majority label per group (ties → smallest label)
    K = int(labels.max()) + 1 if labels.size else 1
    counts = np.zeros((G, K), np.int64)
    np.add.at(counts, (inv, labels), 1)
    major = counts.argmax(axis=1)
    code = np.zeros(G, np.uint8)
    for k in range(K):
        members = np.flatnonzero(major == k)
        if members.size == 0:
            continue
        members = members[rng.permutation(members.size)]
        n_test = int(round(test_fraction * members.size))
        n_val = int(round(val_fraction * members.size))
        n_test = min(n_test, members.size)
        n_val = min(n_val, members.size - n_test)
        code[members[:n_test]] = 2
        code[members[n_test:n_test + n_val]] = 1
    for c, f in ((2, test_fraction), (1, val_fraction)):
        if f > 0 and not (code == c).any() and G >= 3:
            train = np.flatnonzero(code == 0)
            if train.size > 1:
                code[train[rng.integers(train.size)]] = c
    return code[inv]


def write_bags(out: Path, n: int, m: int, patch_size: int, image_shape: tuple, dtype, batches, *,
               app: str, class_names: list, attrs: dict, seed, augmentation: Augmentation,
               progress=None) -> Path:
    """Augment streamed image batches into bags and write them with :class:`aift_tf.store.StoreWriter`.

    ``batches`` yields ``(start, images, labels, groups, split)``; ``images`` are (k, H, W, C) and
    the candidate ids ``start … start+k−1`` are the per-image child-seed ids of the augmentation.
    The store is written atomically: on any error no file appears at ``out``.
    """
    from aift_tf.store import StoreWriter

    C = int(image_shape[-1])
    store_dtype = np.uint8 if np.dtype(dtype) == np.uint8 else np.float32
    done = 0
    with StoreWriter(out, n, m, (patch_size, patch_size, C), store_dtype, app=app,
                     class_names=list(class_names), attrs=attrs) as w:
        for start, images, labels, groups, split in batches:
            k = len(images)
            bags = make_patch_bags(images, m, patch_size, seed=seed, ids=np.arange(start, start + k),
                                   augmentation=augmentation)
            w.write(start, bags, labels, groups, split)
            done += k
            if progress is not None:
                progress(done, n)
    return out


def split_summary(split: np.ndarray) -> str:
    counts = np.bincount(np.asarray(split, np.int64), minlength=3)
    return ", ".join(f"{name} {int(c)}" for name, c in zip(SPLIT_NAMES, counts))
