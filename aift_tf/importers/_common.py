"""Helpers shared by the importers: output checks, group-wise splits, streaming bag writing."""

from __future__ import annotations

import csv
import math
import os
import warnings
from pathlib import Path

import numpy as np

from aift_tf.checks import check_int
from aift_tf.errors import AiftError
from aift_tf.importers.augment import Augmentation, make_patch_bags

SPLIT_NAMES = ("train", "val", "test")  # same codes as aift_tf.store.SPLITS
DEFAULT_CHUNK = 256  # images augmented and written at once
CHUNK_BYTES = 64 << 20  # at most this many bytes of patch bags are held at once (fewer images per chunk)
SEED_MAX = 2 ** 32 - 1  # seeds are 0 .. 2**32 - 1 (recorded in the store's attributes)
MAX_CANDIDATE_BYTES = 256 << 20  # one candidate's bag (m x S x S x C) is one HDF5 chunk; refuse bigger
MAX_LABEL = 2 ** 62  # label / group ids in an input file must lie below this (int64 with room to spare)


def check_out(out_path, overwrite: bool, inputs=()) -> Path:
    """Refuse to replace an existing output unless ``overwrite``; the write itself stays atomic.

    Args:
        out_path: the store to write.
        overwrite: an existing file may be replaced.
        inputs: paths the importer reads (archive, CSV, images, volumes): never the output, even with
            ``overwrite`` (the input would be gone before it is read).

    Example:
        >>> check_out("x.h5", False, inputs=["x.npz"])
        PosixPath('x.h5')
    """
    out = Path(out_path)
    if str(out_path).strip() == "" or out.name in ("", ".", ".."):
        raise AiftError(f"{str(out_path)!r}: output must be a file path (.h5)")
    parent = out.parent
    if not parent.exists():
        raise AiftError(f"{out}: parent folder {parent} does not exist")
    if not parent.is_dir():
        raise AiftError(f"{out}: {parent} is a file, not a folder")
    if out.is_dir():
        raise AiftError(f"{out}: output is a folder, expected a .h5 file path")
    for p in inputs:
        if same_file(out, p):
            raise AiftError(f"{out}: output would overwrite the input {p}")
    if out.exists() and not overwrite:
        raise AiftError(f"{out}: output already exists; pass --overwrite (overwrite=True) to replace it")
    if out.exists() and not is_store_file(out):
        raise AiftError(f"{out}: exists and is not a candidate store; --overwrite replaces only a store "
                        f"(give another path)")
    return out


def is_store_file(path) -> bool:
    """Whether ``path`` is an HDF5 file with the candidate-store format attribute (what --overwrite may replace)."""
    import h5py

    from aift_tf.store import FORMAT

    try:
        with h5py.File(path, "r") as f:
            fmt = f.attrs.get("format")
    except (OSError, ValueError):
        return False
    if isinstance(fmt, bytes):
        fmt = fmt.decode(errors="replace")
    return fmt == FORMAT


def same_file(a, b) -> bool:
    """Whether paths ``a`` and ``b`` name one file (resolved paths, or the same inode when both exist)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def check_seed(seed):
    """``seed`` as an int in ``0 .. SEED_MAX`` (or None: fresh entropy); the one-form AiftError otherwise.

    Example:
        >>> check_seed(3), check_seed(None)
        (3, None)
    """
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= SEED_MAX:
        raise AiftError(f"seed must be an integer >= 0 and <= {SEED_MAX}; got {seed!r}")
    return int(seed)


def check_bag_size(m: int, patch_size: int, channels: int, itemsize: int) -> None:
    """Refuse a candidate bag (``m`` patches of ``patch_size``² x ``channels``) above MAX_CANDIDATE_BYTES."""
    size = int(m) * int(patch_size) ** 2 * int(channels) * int(itemsize)
    if size > MAX_CANDIDATE_BYTES:
        raise AiftError(f"one candidate would take {size / 2 ** 20:.0f} MiB ({m} patches of {patch_size}x{patch_size}"
                        f"x{channels}); at most {MAX_CANDIDATE_BYTES >> 20} MiB: lower m (--patches) or patch_size")


def default_warn(message: str) -> None:
    """The default ``warn`` of the importers: :func:`warnings.warn` (the CLI prints ``warning: ...``)."""
    warnings.warn(message, stacklevel=3)


def dense_labels(labels, where: str, class_names=None, warn=None, source: str = "labels"):
    """Class ids ``0 .. K-1``, every one used, from integer labels (``-1`` = unknown stays ``-1``).

    * ``class_names`` given (K names): every label must be in ``0 .. K-1`` and every class must have a
      candidate (a named class without any would be an empty class in the store).
    * Otherwise the labels used, sorted, become ``0 .. K-1``; if they are not already ``0 .. K-1`` (e.g.
      ``{0, 5}`` or 1-based ``1 .. K``), they are remapped and ``warn`` names the mapping. Class names are
      ``class_<original label>``, so nothing is lost; the store records the map in its ``label_map`` attribute.

    Args:
        labels: (n,) integers (``-1`` = unknown).
        where: the file named in errors.
        class_names: optional list of K names.
        warn: ``warn(message)`` for the remapping (default :func:`warnings.warn`).
        source: what the labels are called in messages.

    Returns:
        ``(labels int64, class_names, label_map or None)``; ``label_map`` = ``{original: new}``.

    Raises:
        AiftError: fewer than 2 classes, a label out of range of ``class_names``, a named class without
        any candidate.

    Example:
        >>> dense_labels(np.array([0, 5, 5]), "x.npz", warn=print)[0].tolist()
        x.npz: labels {0, 5} remapped to {0: 0, 5: 1} (class names class_0, class_5; recorded in label_map)
        [0, 1, 1]
    """
    y = np.asarray(labels, np.int64)
    known = y[y >= 0]
    used = np.unique(known)
    if class_names is not None:
        K = len(class_names)
        bad = np.flatnonzero(y >= K)
        if bad.size:
            i = int(bad[0])
            raise AiftError(f"{where}: {source}[{i}] = {int(y[i])} is out of range for {K} class names "
                            f"(0 .. {K - 1})")
        empty = [str(class_names[k]) for k in range(K) if k not in set(used.tolist())]
        if empty and known.size == y.size:
            raise AiftError(f"{where}: {len(class_names)} class names but only {used.size} of them have a "
                            f"candidate: no candidate of class {', '.join(repr(c) for c in empty[:5])}"
                            f"{' ...' if len(empty) > 5 else ''} (give only the classes present)")
        return y, list(class_names), None
    if used.size < 2:
        found = "no class found (no known label)" if used.size == 0 else \
            f"only one class found ({source} all {int(used[0])})"
        raise AiftError(f"{where}: {found}; a store needs >= 2 classes")
    if used[-1] == used.size - 1:  # already 0 .. K-1, every class used
        return y, [f"class_{k}" for k in range(used.size)], None
    mapping = {int(v): k for k, v in enumerate(used)}
    names = [f"class_{int(v)}" for v in used]
    new = np.where(y >= 0, np.searchsorted(used, np.maximum(y, 0)), -1).astype(np.int64)
    items = list(mapping.items())
    more = ", ..." if len(items) > 12 else ""
    (warn or default_warn)(
        f"{where}: {source} {{{', '.join(str(a) for a, _ in items[:12])}{more}}} remapped to "
        f"{{{', '.join(f'{a}: {b}' for a, b in items[:12])}{more}}} ({len(items)} classes named "
        f"{', '.join(names[:12])}{more}; recorded in the store attribute label_map)")
    return new, names, mapping


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


def common_args(m, patch_size, val_fraction, test_fraction, augmentation, aug_options, out_path, overwrite,
                inputs=()):
    """Validate the arguments every importer shares; returns (m, patch_size, val, test, augmentation, out).

    ``inputs``: the files the importer reads, which the output may never replace (see :func:`check_out`).
    """
    m = check_int(m, "m (patches per candidate)", 1)
    if patch_size is not None:
        patch_size = check_int(patch_size, "patch_size", 1)
        check_bag_size(m, patch_size, 1, 1)  # the channels and dtype are checked again once known
    vf, tf = check_fractions(val_fraction, test_fraction)
    aug = make_augmentation(augmentation, aug_options)
    out = check_out(out_path, overwrite, inputs)
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
    per = int(m) * int(patch_size) ** 2 * C * np.dtype(store_dtype).itemsize
    step = max(1, CHUNK_BYTES // max(per, 1))  # images per make_patch_bags call
    done = 0
    with StoreWriter(out, n, m, (patch_size, patch_size, C), store_dtype, app=app,
                     class_names=list(class_names), attrs=attrs) as w:
        for start, images, labels, groups, split in batches:
            for a in range(0, len(images), step):
                b = min(len(images), a + step)
                bags = make_patch_bags(images[a:b], m, patch_size, seed=seed, ids=np.arange(start + a, start + b),
                                       augmentation=augmentation)
                w.write(start + a, bags, labels[a:b], groups[a:b], split[a:b])
                done += b - a
                if progress is not None:
                    progress(done, n)
    return out

