"""Import image folders and CSV lists as candidate stores.

* :func:`import_folder` — ``root/<class name>/…/<image>``: one sub-folder per class; class ids follow
  the sorted folder names. Images are found recursively (hidden files and files without an image
  extension are skipped). Groups: each image its own (``group_by="image"``), or the first folder
  below the class folder (``group_by="subfolder"``, e.g. ``root/tumour/patient_07/slice_3.png``;
  the same sub-folder name under two classes is the same group).
* :func:`import_csv` — a CSV with a header and columns ``path,label[,group][,split]`` (any order,
  names case-insensitive, extra columns ignored); relative paths are relative to the CSV's folder.
  Labels that all parse as integers are class ids (names ``class_0`` …, or ``class_names``);
  otherwise they are names mapped to ids in sorted order (or in the order of ``class_names``).
  ``split`` values are ``train``/``val``/``test``.

Both probe every image first (Pillow; DICOM ``.dcm``/``.dicom`` headers with pydicom: an unreadable
image or a DICOM without pixel data is an error naming the file, before anything is written), map
DICOM and 16-bit / float images to 8 bits through an intensity window (``window``: ``(lo, hi)``, a
preset such as ``"mediastinum"``, or ``None`` = per image: a DICOM's own WindowCenter/WindowWidth,
else the image's 0.5-99.5 percentiles; DICOM values are in stored units after RescaleSlope/Intercept,
MONOCHROME1 is inverted), convert to one colour mode — ``color="auto"`` picks grayscale when every
image is grayscale, else RGB (alpha dropped) — and resize to one size
(``image_size``; default the most frequent size, ties → the smallest) with Pillow's antialiasing
bilinear filter. Without a split column, the split is a seeded, label-stratified split by group
(``val_fraction``, ``test_fraction``): a group never spans two splits. Each image becomes a candidate
of ``m`` patches made by :mod:`aift_tf.importers.augment` (patch 0 = the plain resized image), stored
in list order; candidate ``i`` is augmented with the child seed ``(seed, i)``.
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np

from aift_tf.errors import AiftError
from aift_tf.importers.dicom import DICOM_EXTENSIONS, dicom_info, first_line, read_dicom_image
from aift_tf.importers._common import (
    DEFAULT_CHUNK, MAX_LABEL, SPLIT_NAMES, check_bag_size, check_group_splits, check_seed, common_args, dense_labels,
    group_split, parse_split, read_csv_table, write_bags,
)
from aift_tf.volumes import apply_window, auto_window, describe_window, parse_window

__all__ = ["import_folder", "import_csv", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pgm", ".ppm", ".pnm") + DICOM_EXTENSIONS
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
COLORS = ("auto", "gray", "rgb")
MAX_IMAGE_PIXELS = 1 << 28  # an image resized to image_size is held in memory


# ------------------------------------------------------------------------------------------------
# image reading
# ------------------------------------------------------------------------------------------------


def _is_dicom(path: Path) -> bool:
    return path.suffix.lower() in DICOM_EXTENSIONS


def _probe(path: Path, where: str):
    """(width, height, mode) of an image, verifying that it can be decoded (DICOM: its header)."""
    from PIL import Image

    if not path.exists():
        raise AiftError(f"{where}: image {path} does not exist")
    if not path.is_file():
        raise AiftError(f"{where}: image {path} is not a file")
    if _is_dicom(path):
        w, h, samples = dicom_info(path)
        return w, h, "L" if samples == 1 else "RGB"
    try:
        with Image.open(path) as im:
            im.load()
            return im.size[0], im.size[1], im.mode
    except Exception as e:  # noqa: BLE001 - any decoder failure means an unreadable image
        raise AiftError(f"{where}: cannot read image {path} ({first_line(e)})") from None


def _open_8bit(path: Path, window):
    """A Pillow image with 8-bit samples: DICOM and 16-bit / float images through ``window``.

    ``window`` is ``(lo, hi)`` or ``None`` (auto: the DICOM's own VOI window, else the image's
    0.5-99.5 percentiles); 8-bit images are returned as they are.
    """
    from PIL import Image

    if _is_dicom(path):
        a = read_dicom_image(path, window)
        return Image.fromarray(a, "L" if a.ndim == 2 else "RGB")
    with Image.open(path) as im:
        im.load()
        if im.mode.startswith("I") or im.mode == "F":
            a = np.asarray(im, dtype=np.float64)
            return Image.fromarray(apply_window(a, window if window is not None else auto_window(a)), mode="L")
        return im.copy()


def _to_array(path: Path, size_hw: tuple, gray: bool, window=None) -> np.ndarray:
    """Read, convert (window for DICOM / 16-bit) and resize one image -> (H, W, C) uint8."""
    from PIL import Image

    try:
        im = _open_8bit(path, window)
        im2 = im.convert("L") if gray else im.convert("RGB")
        H, W = size_hw
        if im2.size != (W, H):
            im2 = im2.resize((W, H), resample=Image.Resampling.BILINEAR)
        a = np.asarray(im2, dtype=np.uint8)
    except AiftError:
        raise
    except Exception as e:  # noqa: BLE001
        raise AiftError(f"cannot read image {path} ({first_line(e)})") from None
    return a[:, :, None] if a.ndim == 2 else a


def _size_arg(image_size):
    if image_size is None:
        return None
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        hw = (int(image_size), int(image_size))
    else:
        try:
            hw = tuple(int(v) for v in image_size)
        except (TypeError, ValueError):
            raise AiftError(f"image_size must be an int or (height, width); got {image_size!r}") from None
        if len(hw) != 2:
            raise AiftError(f"image_size must be an int or (height, width); got {image_size!r}")
    if min(hw) < 1:
        raise AiftError(f"image_size must be positive; got {image_size!r}")
    if hw[0] * hw[1] > MAX_IMAGE_PIXELS:
        raise AiftError(f"image_size must be at most {MAX_IMAGE_PIXELS} pixels (e.g. 16384x16384); got "
                        f"{hw[0]}x{hw[1]}")
    return hw


def _import_records(paths, labels, groups, split, out, *, where, class_names, m, patch_size, seed,
                    val_fraction, test_fraction, image_size, color, window, app, attrs, augmentation, progress):
    """Probe every image, settle size/mode/split, then stream augmented bags into the store."""
    n = len(paths)
    if n == 0:
        raise AiftError(f"{where}: no images found")
    seed = check_seed(seed)
    target = out.resolve()
    for p in paths:
        if p.resolve() == target:
            raise AiftError(f"{out}: output would overwrite the input image {p}")
    if color not in COLORS:
        raise AiftError(f"color must be one of {', '.join(COLORS)}; got {color!r}")
    size_hw = _size_arg(image_size)
    win = parse_window(window)
    probes = [_probe(p, where) for p in paths]
    if size_hw is None:
        freq = collections.Counter((h, w) for (w, h, _) in probes)
        size_hw = min(freq, key=lambda hw: (-freq[hw], hw[0] * hw[1], hw))
    gray = color == "gray" or (color == "auto" and all(mode in _GRAY_MODES for (_, _, mode) in probes))
    C = 1 if gray else 3
    S = patch_size if patch_size is not None else min(size_hw)
    check_bag_size(m, S, C, 1)

    labels = np.asarray(labels, np.int64)
    groups = np.asarray(groups, np.int64)
    if len(class_names) < 2:
        raise AiftError(f"{where}: only one class found ({class_names}); a store needs >= 2 classes")
    if split is None:
        split = group_split(groups, labels, val_fraction, test_fraction, seed)
        if not (split == 0).any():
            raise AiftError(f"{where}: the split left no training images; lower val/test fractions")
    split = np.asarray(split, np.uint8)

    def batches():
        for a in range(0, n, DEFAULT_CHUNK):
            b = min(n, a + DEFAULT_CHUNK)
            imgs = np.stack([_to_array(p, size_hw, gray, win) for p in paths[a:b]])
            yield a, imgs, labels[a:b], groups[a:b], split[a:b]

    attrs = dict(attrs)
    attrs.update({"seed": int(seed) if seed is not None else -1, "image_shape": [size_hw[0], size_hw[1], C],
                  "augmentation": augmentation.to_dict()})
    attrs.update(describe_window(window))
    write_bags(out, n, m, S, (size_hw[0], size_hw[1], C), np.uint8, batches(), app=app,
               class_names=class_names, attrs=attrs, seed=seed, augmentation=augmentation, progress=progress)
    counts = {name: int((split == i).sum()) for i, name in enumerate(SPLIT_NAMES)}
    return {"out": out, "n": n, "m": m, "patch_shape": (S, S, C), "dtype": "uint8",
            "class_names": list(class_names), "counts": counts, "label_map": attrs.get("label_map")}


# ------------------------------------------------------------------------------------------------
# image folder
# ------------------------------------------------------------------------------------------------


def _is_image(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS


def import_folder(root, out_path, m: int = 8, patch_size: int | None = None, seed: int = 0, *,
                  val_fraction: float = 0.1, test_fraction: float = 0.1, image_size=None,
                  color: str = "auto", window=None, group_by: str = "image", app: str | None = None,
                  overwrite: bool = False, augmentation=None, progress=None, **aug_options) -> dict:
    """Import ``root/<class>/…/<image>`` as a candidate store (see the module docstring).

    Args:
        root: folder with one sub-folder per class (≥ 2 classes, each with ≥ 1 image).
        out_path: the ``.h5`` store; refused if it exists unless ``overwrite``.
        m, patch_size, seed: bag size, patch side (None → the smaller image side), seed.
        val_fraction, test_fraction: fractions of groups sent to val / test.
        image_size: int or (height, width) all images are resized to; None → most frequent size.
        color: "auto" | "gray" | "rgb".
        window: intensity window for DICOM and 16-bit / float images (8-bit images are used as
            they are): ``(lo, hi)``, ``"LO,HI"``, a preset of :data:`aift_tf.volumes.WINDOW_PRESETS`
            or ``None``/``"auto"`` (per image: the DICOM's own WindowCenter/Width, else the image's
            0.5-99.5 percentiles). Recorded in the store attributes ``window``/``window_preset``.
        group_by: "image" (each image its own group) or "subfolder".
        app: store ``app`` name; default ``"folder:<root name>"``.
        augmentation / aug_options, progress: as :func:`aift_tf.importers.npz.import_npz`.

    Returns:
        summary dict (``out``, ``n``, ``m``, ``patch_shape``, ``dtype``, ``class_names``, ``counts``).
    """
    root = Path(root)
    m, patch_size, vf, tf, aug, out = common_args(m, patch_size, val_fraction, test_fraction, augmentation,
                                                   aug_options, out_path, overwrite)
    if group_by not in ("image", "subfolder"):
        raise AiftError(f"group_by must be 'image' or 'subfolder'; got {group_by!r}")
    if not root.exists():
        raise AiftError(f"{root}: no such folder")
    if not root.is_dir():
        raise AiftError(f"{root}: not a folder (expected one sub-folder per class)")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise AiftError(f"{root}: found {len(class_dirs)} class sub-folder(s); need at least 2 (one "
            f"per class)")
    paths, labels, group_keys = [], [], []
    for k, cdir in enumerate(class_dirs):
        files = sorted(p for p in cdir.rglob("*") if _is_image(p)
                       and not any(part.startswith(".") for part in p.relative_to(cdir).parts))
        if not files:
            raise AiftError(f"{cdir}: class folder has no images (extensions: {' '.join(IMAGE_EXTENSIONS)})")
        for p in files:
            rel = p.relative_to(cdir)
            if group_by == "subfolder" and len(rel.parts) > 1:
                key = "dir:" + rel.parts[0]
            else:
                key = "img:" + str(p.relative_to(root))
            paths.append(p)
            labels.append(k)
            group_keys.append(key)
    uniq = {g: i for i, g in enumerate(sorted(set(group_keys)))}
    groups = [uniq[g] for g in group_keys]
    attrs = {"importer": "folder", "source": root.name, "group_kind": group_by}
    return _import_records(paths, labels, groups, None, out, where=str(root),
                           class_names=[p.name for p in class_dirs], m=m, patch_size=patch_size, seed=seed,
                           val_fraction=vf, test_fraction=tf, image_size=image_size, color=color, window=window,
                           app=app or f"folder:{root.resolve().name}", attrs=attrs, augmentation=aug,
                           progress=progress)


# ------------------------------------------------------------------------------------------------
# CSV
# ------------------------------------------------------------------------------------------------


def _parse_int(s: str):
    try:
        return int(s)
    except ValueError:
        return None


def import_csv(csv_path, out_path, m: int = 8, patch_size: int | None = None, seed: int = 0, *,
               val_fraction: float = 0.1, test_fraction: float = 0.1, image_size=None, color: str = "auto",
               window=None, class_names=None, app: str | None = None, overwrite: bool = False, augmentation=None,
               progress=None, warn=None, **aug_options) -> dict:
    """Import a CSV list ``path,label[,group][,split]`` as a candidate store (see the module docstring).

    Args:
        csv_path: the CSV file (header row required).
        class_names: optional list fixing the class order (string labels must be in it; integer
            labels must be < its length); every class named must have at least one row.
        warn: optional ``warn(message)`` (default :func:`warnings.warn`): integer labels without
            ``class_names`` that are not ``0 .. K-1`` (e.g. ``{0, 5}``, 1-based) are remapped to
            ``0 .. K-1``, the mapping named (class names ``class_<label>``, store attribute ``label_map``).
        other args: as :func:`import_folder`; ``val_fraction``/``test_fraction`` are used only
            when there is no ``split`` column.

    Errors name the CSV file and line (line 1 = the header).

    Example:
        >>> import_csv("xrays/labels.csv", "xrays.h5", m=8, class_names=["normal", "pneumonia"])["counts"]
        {'train': ..., 'val': ..., 'test': ...}
    """
    csv_path = Path(csv_path)
    m, patch_size, vf, tf, aug, out = common_args(m, patch_size, val_fraction, test_fraction, augmentation,
                                                   aug_options, out_path, overwrite, inputs=[csv_path])
    cols, body = read_csv_table(csv_path, ("path", "label"), ("group", "split"), "path,label[,group][,split]")
    paths, raw_labels, raw_groups, raw_split = [], [], [], []
    for line, vals in body:
        for c, v in vals.items():
            if not v:
                raise AiftError(f"{csv_path}: line {line}: empty {c!r} value")
        p = Path(vals["path"])
        paths.append(p if p.is_absolute() else csv_path.parent / p)
        raw_labels.append((line, vals["label"]))
        raw_groups.append(vals.get("group"))
        if "split" in vals:
            raw_split.append(parse_split(csv_path, line, vals["split"]))

    # labels
    ints = [_parse_int(v) for _, v in raw_labels]
    if class_names is not None:
        if isinstance(class_names, str) or len(class_names) < 2:
            raise AiftError(f"class_names must be a list of at least 2 names; got {class_names!r}")
        class_names = [str(c) for c in class_names]
        if any(not c.strip() for c in class_names) or len(set(class_names)) != len(class_names):
            raise AiftError(f"class_names must be distinct non-empty names; got {class_names!r}")
    label_map = None
    if all(i is not None for i in ints):
        for (line, v), i in zip(raw_labels, ints):
            if i < 0:
                raise AiftError(f"{csv_path}: line {line}: label {v!r} is negative")
            if i >= MAX_LABEL:
                raise AiftError(f"{csv_path}: line {line}: label {v!r} is too large (labels must be < 2**62)")
            if class_names is not None and i >= len(class_names):
                raise AiftError(f"{csv_path}: line {line}: label {i} is out of range for "
                    f"{len(class_names)} class names")
        labels, class_names, label_map = dense_labels(ints, str(csv_path), class_names, warn)
    else:
        if class_names is None:
            class_names = sorted({v for _, v in raw_labels})
        index = {c: k for k, c in enumerate(class_names)}
        labels = []
        for line, v in raw_labels:
            if v not in index:
                raise AiftError(f"{csv_path}: line {line}: label {v!r} is not one of the class "
                    f"names {class_names}")
            labels.append(index[v])
        labels, class_names, _ = dense_labels(labels, str(csv_path), class_names, warn)

    # groups: each row its own, or the group column's distinct values in sorted order
    if "group" in cols:
        gints = [_parse_int(g) for g in raw_groups]
        keys = gints if all(g is not None for g in gints) else raw_groups
        uniq = {g: i for i, g in enumerate(sorted(set(keys)))}
        groups = [uniq[g] for g in keys]
    else:
        groups = list(range(len(paths)))

    split = None
    if "split" in cols:
        split = np.asarray(raw_split, np.uint8)
        check_group_splits(csv_path, [line for line, _ in body], raw_groups if "group" in cols else groups,
                           raw_split)
        if not (split == 0).any():
            raise AiftError(f"{csv_path}: no row has split 'train' (the active-learning pool would be empty)")

    attrs = {"importer": "csv", "source": csv_path.name, "group_kind": "group" if "group" in cols else "image"}
    if label_map is not None:
        attrs["label_map"] = {str(a): b for a, b in label_map.items()}
    return _import_records(paths, labels, groups, split, out, where=str(csv_path), class_names=class_names,
                           m=m, patch_size=patch_size, seed=seed, val_fraction=vf, test_fraction=tf,
                           image_size=image_size, color=color, window=window, app=app or f"csv:{csv_path.stem}", attrs=attrs,
                           augmentation=aug, progress=progress)
