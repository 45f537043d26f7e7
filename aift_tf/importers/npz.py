"""Import an ``.npz`` archive in the MedMNIST layout as a candidate store.

Layout (MedMNIST, https://medmnist.com)::

    train_images (N, H, W) or (N, H, W, C)   uint8 (or integers in [0, 255], or floats in [0, 1])
    train_labels (N,) or (N, 1)              integer class ids 0 .. K-1
    val_images / val_labels                  optional (carved from train by val_fraction if absent)
    test_images / test_labels                optional (carved from train by test_fraction if absent)
    train_groups / val_groups / test_groups  optional (N,) non-negative ints (patient ids)
    class_names                              optional (K,) strings; default "class_0" .. "class_{K-1}"

Every image becomes one candidate whose ``m`` patches are made by
:func:`aift_tf.importers.augment.make_patch_bags` (patch 0 = the plain resized image). The split comes
from the key prefix. MedMNIST has no patient ids, so each image is its own group unless
``<split>_groups`` keys are given (images of a split without such a key get fresh groups). Candidates
are stored in file order (train, val, test) and candidate ``i`` is augmented with the child seed
``(seed, i)``, so the store is a deterministic function of (file, m, patch_size, seed, options).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from aift_tf.errors import AiftError
from aift_tf.importers._common import (
    DEFAULT_CHUNK, MAX_LABEL, SPLIT_NAMES, check_bag_size, check_seed, common_args, dense_labels, group_split,
    write_bags,
)

__all__ = ["import_npz", "read_npz"]


def _load(npz: Path):
    if not npz.exists():
        raise AiftError(f"{npz}: no such file")
    if not npz.is_file():
        raise AiftError(f"{npz}: not a file")
    if not zipfile.is_zipfile(npz):
        raise AiftError(f"{npz}: not an .npz archive (not a zip file)")
    try:
        f = np.load(npz, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any reader failure is a bad input file
        raise AiftError(f"{npz}: not a readable .npz archive ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise AiftError(f"{npz}: not an .npz archive")
    return f


def _get(f, npz: Path, key: str) -> np.ndarray:
    try:
        value = f[key]
    except ValueError as e:  # object arrays need pickle
        if "allow_pickle" in str(e) or "pickle" in str(e).lower():
            raise AiftError(f"{npz}: key {key!r} is an object array, which only pickle can load; pickle is refused "
                            f"(loading it can run arbitrary code): save {key!r} as a plain numeric or string "
                            f"array (e.g. np.asarray(x, dtype=np.uint8) / dtype=str)") from None
        msg = str(e).splitlines()[0] if str(e) else ""
        raise AiftError(f"{npz}: key {key!r} is unreadable ({msg})") from None
    except Exception as e:  # noqa: BLE001 - corrupt member
        raise AiftError(f"{npz}: key {key!r} is unreadable ({type(e).__name__})") from None
    if not isinstance(value, np.ndarray):  # numpy hands out the raw bytes of a member that is no .npy file
        raise AiftError(f"{npz}: member {key!r} is not a .npy array (an .npz holds arrays saved by numpy.savez)")
    return value


def _check_images(npz: Path, key: str, x: np.ndarray) -> np.ndarray:
    if x.ndim == 3:
        x = x[..., None]
    elif x.ndim != 4:
        raise AiftError(f"{npz}: {key} must have shape (N, H, W) or (N, H, W, C); got shape {x.shape}")
    if x.shape[3] not in (1, 3):
        raise AiftError(f"{npz}: {key} has {x.shape[3]} channels; expected 1 (grayscale) or 3 (RGB)")
    if x.shape[0] == 0:
        raise AiftError(f"{npz}: {key} is empty (0 images); drop the split's keys or add images")
    if min(x.shape[1:3]) < 1:
        raise AiftError(f"{npz}: {key} has an empty image dimension: shape {x.shape}")
    kind = x.dtype.kind
    if x.dtype == np.uint8:
        return x
    if kind == "b":
        return x.astype(np.uint8) * 255
    if kind in "iu":
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > 255:
            raise AiftError(f"{npz}: integer {key} must lie in [0, 255]; found values in [{lo}, {hi}]")
        return x.astype(np.uint8)
    if kind == "f":
        finite = np.isfinite(x)
        if not finite.all():
            i = int(np.flatnonzero(~finite.reshape(x.shape[0], -1).all(axis=1))[0])
            raise AiftError(f"{npz}: {key}[{i}] contains NaN or infinite values")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:
            raise AiftError(
                f"{npz}: float {key} must lie in [0, 1]; found values in [{lo:g}, {hi:g}] "
                "(rescale, or store uint8 in [0, 255])"
            )
        return x.astype(np.float32)
    raise AiftError(f"{npz}: {key} has unsupported dtype {x.dtype}; expected uint8, integers or floats")


def _check_ints(npz: Path, key: str, y: np.ndarray, n: int, what: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        extra = " (multi-label data is not supported)" if what == "labels" and y.ndim == 2 else ""
        raise AiftError(f"{npz}: {key} must have shape (N,) or (N, 1); got shape {y.shape}{extra}")
    if y.shape[0] != n:
        raise AiftError(f"{npz}: {key} has {y.shape[0]} entries but the images have {n}")
    if y.dtype.kind == "b":
        return y.astype(np.int64)
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise AiftError(f"{npz}: {key}[{i}] = {y[i].item()!r} is not an integer {what[:-1]}")
    elif y.dtype.kind not in "iu":
        raise AiftError(f"{npz}: {key} must be integers; got dtype {y.dtype}")
    if y.size and y.dtype.kind in "iuf":  # compare in the input's own type: a cast could wrap around
        neg = y < 0
        if neg.any():
            i = int(np.flatnonzero(neg)[0])
            raise AiftError(f"{npz}: {key}[{i}] = {y[i].item()!r} is negative")
        big = y >= MAX_LABEL
        if big.any():
            i = int(np.flatnonzero(big)[0])
            raise AiftError(f"{npz}: {key}[{i}] = {y[i].item()!r} is too large ({what} must be < 2**62)")
    return y.astype(np.int64)


def read_npz(npz_path) -> dict:
    """Read and validate a MedMNIST-layout archive into memory.

    Returns a dict with ``images`` {split: (N, H, W, C) uint8/float32}, ``labels`` {split: (N,)
    int64}, ``groups`` {split: (N,) int64 or None} and ``class_names`` (list or None) for the
    splits present. Raises :class:`AiftError` naming the file, key and value for any problem.
    """
    npz = Path(npz_path)
    f = _load(npz)
    with f:
        keys = set(f.files)
        missing = [k for k in ("train_images", "train_labels") if k not in keys]
        for s in ("val", "test"):
            have = [f"{s}_{k}" in keys for k in ("images", "labels")]
            if any(have) and not all(have):
                missing.append(f"{s}_labels" if have[0] else f"{s}_images")
        if missing:
            raise AiftError(f"{npz}: missing key(s) {', '.join(missing)} (found: "
                f"{', '.join(sorted(keys)) or 'none'})")
        images, labels, groups = {}, {}, {}
        hw = None
        for s in SPLIT_NAMES:
            if f"{s}_images" not in keys:
                continue
            x = _check_images(npz, f"{s}_images", _get(f, npz, f"{s}_images"))
            if hw is None:
                hw = (x.shape[1:], "train_images" if s == "train" else f"{s}_images")
            elif x.shape[1:] != hw[0]:
                raise AiftError(
                    f"{npz}: {s}_images has image shape {x.shape[1:]} but {hw[1]} has {hw[0]}"
                )
            images[s] = x
            labels[s] = _check_ints(npz, f"{s}_labels", _get(f, npz, f"{s}_labels"), x.shape[0], "labels")
            gk = f"{s}_groups"
            groups[s] = _check_ints(npz, gk, _get(f, npz, gk), x.shape[0], "groups") if gk in keys else None
        dtypes = {x.dtype for x in images.values()}
        if len(dtypes) > 1:  # mixed uint8/float: store everything as float32 in [0, 1]
            images = {s: (x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x)
                      for s, x in images.items()}
        class_names = None
        if "class_names" in keys:
            cn = _get(f, npz, "class_names")
            if cn.ndim != 1 or cn.dtype.kind not in "US":
                raise AiftError(f"{npz}: class_names must be a 1-D array of strings; got shape "
                    f"{cn.shape}, dtype {cn.dtype}")
            class_names = [str(c) for c in cn.tolist()]
            if any(not c for c in class_names) or len(set(class_names)) != len(class_names):
                raise AiftError(f"{npz}: class_names must be distinct non-empty strings; got {class_names}")
    return {"images": images, "labels": labels, "groups": groups, "class_names": class_names}


def import_npz(npz_path, out_path, m: int = 8, patch_size: int | None = None, seed: int = 0, *,
               val_fraction: float = 0.1, test_fraction: float = 0.1, app: str | None = None,
               overwrite: bool = False, augmentation=None, progress=None, warn=None, **aug_options) -> dict:
    """Import a MedMNIST-layout ``.npz`` as a candidate store (see the module docstring).

    Args:
        npz_path: the archive.
        out_path: the store to write (``.h5``); refused if it exists unless ``overwrite``.
        m: patches per candidate.
        patch_size: patch side; None → ``min(H, W)`` of the images.
        seed: seed of the augmentation and of any carved split.
        val_fraction, test_fraction: fraction of train *groups* moved to val / test when the archive
            has no ``val_*`` / ``test_*`` keys (ignored for splits that are present).
        app: store ``app`` name; default ``"npz:<file stem>"``.
        overwrite: replace an existing ``out_path`` (atomically, once the new store is complete).
        augmentation / aug_options: an :class:`~aift_tf.importers.augment.Augmentation` or its fields.
        progress: optional ``progress(done, total)`` callback (images processed).
        warn: optional ``warn(message)`` for non-fatal notes (default :func:`warnings.warn`): labels that
            are not ``0 .. K-1`` (e.g. ``{0, 5}`` or 1-based) are remapped to ``0 .. K-1`` and the mapping
            is named (class names ``class_<original label>``; store attribute ``label_map``).

    Returns:
        summary dict: ``out``, ``n``, ``m``, ``patch_shape``, ``dtype``, ``class_names``, ``counts``
        ({split: number of candidates}), ``label_map`` ({original label: class id} or None).

    Raises:
        AiftError: one line naming the file/key/value; no output file is left behind.
    """
    npz = Path(npz_path)
    m, patch_size, val_fraction, test_fraction, aug, out = common_args(
        m, patch_size, val_fraction, test_fraction, augmentation, aug_options, out_path, overwrite, inputs=[npz])
    seed = check_seed(seed)

    d = read_npz(npz)
    present = [s for s in SPLIT_NAMES if s in d["images"]]
    for s in present:  # labels out of range of class_names: named by split key and index
        if d["class_names"] is not None:
            K = len(d["class_names"])
            bad = np.flatnonzero(d["labels"][s] >= K)
            if bad.size:
                i = int(bad[0])
                raise AiftError(f"{npz}: {s}_labels[{i}] = {int(d['labels'][s][i])} is out of range for "
                                f"{K} class_names (0 .. {K - 1})")
    sizes = {s: len(d["labels"][s]) for s in present}
    all_labels, class_names, label_map = dense_labels(
        np.concatenate([d["labels"][s] for s in present]), str(npz), d["class_names"], warn,
        source="labels")
    cuts = np.cumsum([sizes[s] for s in present])[:-1]
    d["labels"] = dict(zip(present, np.split(all_labels, cuts)))

    # Groups: given ids, else a fresh group per image; never shared by two splits.
    given = {s: d["groups"][s] for s in present if d["groups"][s] is not None}
    next_group = max((int(g.max()) + 1 for g in given.values()), default=0)
    groups = {}
    for s in present:
        if s in given:
            groups[s] = given[s]
        else:
            groups[s] = np.arange(next_group, next_group + len(d["labels"][s]), dtype=np.int64)
            next_group += len(d["labels"][s])
    for i, a in enumerate(present):
        for b in present[i + 1:]:
            common = np.intersect1d(groups[a], groups[b])
            if common.size:
                raise AiftError(f"{npz}: group {int(common[0])} appears in both {a}_groups and "
                    f"{b}_groups (data leakage)")

    split = {s: np.full(len(d["labels"][s]), SPLIT_NAMES.index(s), np.uint8) for s in present}
    carve_val = "val" not in present and val_fraction > 0
    carve_test = "test" not in present and test_fraction > 0
    if carve_val or carve_test:
        split["train"] = group_split(groups["train"], d["labels"]["train"],
                                     val_fraction if carve_val else 0.0,
                                     test_fraction if carve_test else 0.0, seed)
        if not (split["train"] == 0).any():
            raise AiftError(f"{npz}: carving val/test from train_images left no training images")

    n = sum(sizes.values())
    first = d["images"][present[0]]
    H, W, C = first.shape[1:]
    S = patch_size if patch_size is not None else min(H, W)
    dtype = first.dtype
    check_bag_size(m, S, C, np.dtype(dtype).itemsize)

    def batches():
        start = 0
        for s in present:
            x = d["images"][s]
            for a in range(0, sizes[s], DEFAULT_CHUNK):
                b = min(sizes[s], a + DEFAULT_CHUNK)
                yield start + a, x[a:b], d["labels"][s][a:b], groups[s][a:b], split[s][a:b]
            start += sizes[s]

    attrs = {
        "importer": "npz",
        "source": npz.name,
        "seed": int(seed) if seed is not None else -1,
        "image_shape": [int(H), int(W), int(C)],
        "augmentation": aug.to_dict(),
        "group_kind": "patient" if given else "image",
    }
    if label_map is not None:
        attrs["label_map"] = {str(a): b for a, b in label_map.items()}
    write_bags(out, n, m, S, (H, W, C), dtype, batches(), app=app or f"npz:{npz.stem}",
               class_names=class_names, attrs=attrs, seed=seed, augmentation=aug, progress=progress)
    codes = np.concatenate([split[s] for s in present])
    counts = {name: int((codes == i).sum()) for i, name in enumerate(SPLIT_NAMES)}
    return {"out": out, "n": n, "m": m, "patch_shape": (S, S, int(C)), "dtype": str(np.dtype(dtype)),
            "class_names": class_names, "counts": counts, "label_map": label_map}
