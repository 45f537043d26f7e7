"""Helpers shared by the importers: output checks, group-wise splits, streaming bag writing."""

from __future__ import annotations

import csv
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


def read_csv_table(csv_path, required: tuple, optional: tuple = (), expected: str = "") -> tuple:
    """Read a CSV with a header row (columns in any order, names case-insensitive, extra columns ignored).

    Args:
        csv_path: the file (UTF-8, optional BOM).
        required, optional: lower-case column names.
        expected: the layout shown in errors, e.g. ``"path,label[,group][,split]"``.

    Returns:
        ``(columns, rows)``: the set of named columns present, and ``[(line, {column: stripped
        value})]`` for every non-blank data row (line 1 is the header).

    Raises:
        AiftError: missing / unreadable / empty file, missing or duplicate column, no data rows, a row
        shorter than the header (each naming the file and the line).
    """
    csv_path = Path(csv_path)
    if not csv_path.exists():
        raise AiftError(f"{csv_path}: no such file")
    if not csv_path.is_file():
        raise AiftError(f"{csv_path}: not a file")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (UnicodeDecodeError, csv.Error, OSError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise AiftError(f"{csv_path}: not a readable UTF-8 CSV file ({msg})") from None
    rows = [(i + 1, r) for i, r in enumerate(rows) if any(c.strip() for c in r)]
    if not rows:
        raise AiftError(f"{csv_path}: empty CSV (expected a header with columns {expected})")
    _, header = rows[0]
    cols = [c.strip().lower() for c in header]
    missing = [c for c in required if c not in cols]
    if missing:
        raise AiftError(f"{csv_path}: missing column(s) {', '.join(missing)} in header {header!r} "
                        f"(expected {expected})")
    named = tuple(required) + tuple(optional)
    dup = sorted({c for c in cols if cols.count(c) > 1 and c in named})
    if dup:
        raise AiftError(f"{csv_path}: duplicate column(s) {', '.join(dup)} in header")
    ix = {c: cols.index(c) for c in named if c in cols}
    body = rows[1:]
    if not body:
        raise AiftError(f"{csv_path}: no data rows after the header")
    out = []
    for line, r in body:
        if len(r) < len(header):
            raise AiftError(f"{csv_path}: line {line} has {len(r)} field(s), the header has {len(header)}")
        out.append((line, {c: r[i].strip() for c, i in ix.items()}))
    return set(ix), out


def check_group_splits(where, lines, group_keys, split_codes) -> None:
    """Every group must lie in one split: an AiftError naming both lines otherwise (data leakage)."""
    seen = {}
    for line, g, s in zip(lines, group_keys, split_codes):
        if seen.setdefault(g, (s, line))[0] != s:
            first_s, first_line = seen[g]
            raise AiftError(f"{where}: line {line}: group {g!r} is in split {SPLIT_NAMES[s]} but line "
                            f"{first_line} puts it in {SPLIT_NAMES[first_s]} (data leakage)")


def parse_split(where, line, value) -> int:
    """A split name (train/val/test, any case) -> its code; AiftError naming the line otherwise."""
    s = value.strip().lower()
    if s not in SPLIT_NAMES:
        raise AiftError(f"{where}: line {line}: unknown split {value!r} (expected train, val or test)")
    return SPLIT_NAMES.index(s)


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

