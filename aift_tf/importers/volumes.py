"""Import CT/MR volumes with a candidate list (LUNA16 layout) as a 2.5-D candidate store.

Input:

* ``images``: a folder holding volume files (``.nii``, ``.nii.gz``, ``.mhd`` (+ its ``.raw``),
  ``.mha``, ``.nrrd``; volume id = the file name without that extension) and/or sub-folders each
  holding one DICOM series (volume id = the sub-folder's name; the series' SeriesInstanceUID is
  accepted as well). Hidden entries and other files are ignored.
* ``candidates``: a CSV with the LUNA16 columns ``seriesuid,coordX,coordY,coordZ,class`` (any order,
  names case-insensitive, extra columns ignored) and an optional ``split`` (``train``/``val``/
  ``test``). Coordinates are world millimetres in the LPS patient system that SimpleITK and DICOM use
  (x to the patient's left, y to posterior, z to superior; LUNA16's coordinates are in it already).
  ``class`` is a class index ``0 .. K-1`` or a class name; empty or ``-1`` = unknown (an unlabelled
  pool for ``aift``); the column itself may be absent (all unknown).

Every volume is read with SimpleITK (DICOM: RescaleSlope/Intercept applied, so CT values are
Hounsfield units), resampled to ``spacing`` mm isotropic and cut into ``m`` 2.5-D patches per
candidate by :mod:`aift_tf.volumes` (channels axial, coronal, sagittal; patch 0 unaugmented and
centred on the candidate). Candidate ``i`` is the CSV's ``i``-th data row; its augmentation depends
only on ``(seed, i)``. Each volume is a group (names in the store attribute ``group_names``); without
a ``split`` column volumes are split by group with seeded, label-stratified fractions.

Everything that can be checked without decoding pixels is checked first (CSV, volume ids, DICOM
series consistency, volume headers, candidates inside their volume); then volumes are streamed one
at a time into an atomic :class:`aift_tf.store.StoreWriter`, so any error leaves no store behind.

Example:
    >>> from aift_tf.importers import import_volumes
    >>> import_volumes("luna/subset0", "luna/candidates.csv", "luna0.h5", m=8, patch_size=32,
    ...                spacing=1.0, window="lung", seed=0)["counts"]
    {'train': ..., 'val': ..., 'test': ...}
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aift_tf.checks import check_int
from aift_tf.errors import AiftError
from aift_tf.importers._common import (
    SPLIT_NAMES, check_bag_size, check_fractions, check_group_splits, check_out, check_seed, dense_labels, group_split,
    parse_split, read_csv_table, same_file,
)
from aift_tf.importers.augment import child_seed
from aift_tf.importers.dicom import dicom_series, first_line
from aift_tf.volumes import (
    PLANE_NAMES, VolumeGeometry, auto_window, describe_window, load_simpleitk, parse_window, resample_isotropic,
    world_patches,
)

__all__ = ["VOLUME_EXTENSIONS", "VolumeSource", "find_volumes", "read_candidates", "read_volume",
           "import_volumes", "DEFAULT_CLASS_NAMES"]

VOLUME_EXTENSIONS = (".nii.gz", ".nii", ".mhd", ".mha", ".nrrd")
MAX_RESAMPLED_VOXELS = 2 ** 30  # a resampled volume is float32 in memory: at most 4 GiB
MAX_FOV_MM = 10_000.0  # a patch spans at most 10 m (any body fits)
MAX_SCALE = 100.0
DEFAULT_CLASS_NAMES = ("negative", "positive")
CANDIDATE_COLUMNS = "seriesuid,coordX,coordY,coordZ[,class][,split]"


@dataclass(frozen=True)
class VolumeSource:
    """One volume of the images folder: ``vid`` (its id), ``path`` (file or DICOM folder), ``series``
    (the validated :class:`~aift_tf.importers.dicom.DicomSeries` of a folder, else None)."""

    vid: str
    path: Path
    series: object = None

    @property
    def uid(self):
        return self.series.uid if self.series is not None else None


def volume_id(path: Path):
    """The id of a volume file (its name without the volume extension), or None for other files."""
    name = path.name
    for ext in VOLUME_EXTENSIONS:
        if name.lower().endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return None


def find_volumes(images) -> dict:
    """``{volume id: VolumeSource}`` for the volume files and DICOM series folders in ``images``.

    DICOM folders are validated here (:func:`aift_tf.importers.dicom.dicom_series`). Raises
    AiftError for a missing folder, no volumes at all, or two entries with one id.
    """
    images = Path(images)
    if not images.exists():
        raise AiftError(f"{images}: no such folder")
    if not images.is_dir():
        raise AiftError(f"{images}: not a folder (expected volume files and/or DICOM series sub-folders)")
    found = {}
    for p in sorted(images.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            src = VolumeSource(p.name, p, dicom_series(p))
        elif p.is_file() and volume_id(p) is not None:
            src = VolumeSource(volume_id(p), p)
        else:
            continue
        if src.vid in found:
            raise AiftError(f"{images}: two volumes with id {src.vid!r} ({found[src.vid].path.name}, {p.name})")
        found[src.vid] = src
    if not found:
        raise AiftError(f"{images}: no volumes found (files {' '.join(VOLUME_EXTENSIONS)} or DICOM series "
                        "sub-folders)")
    return found


def read_candidates(csv_path, class_names=DEFAULT_CLASS_NAMES) -> dict:
    """Read and validate a LUNA16-style candidate list (see the module docstring).

    Returns a dict with ``lines`` (CSV line per candidate), ``uids`` (list of str), ``points``
    (n, 3) float64 world mm, ``labels`` (n,) int64 (-1 unknown), ``split`` ((n,) uint8 codes or None).
    """
    csv_path = Path(csv_path)
    cols, body = read_csv_table(csv_path, ("seriesuid", "coordx", "coordy", "coordz"), ("class", "split"),
                                CANDIDATE_COLUMNS)
    index = {c: k for k, c in enumerate(class_names)}
    lines, uids, points, labels, split = [], [], [], [], []
    for line, v in body:
        uid = v["seriesuid"]
        if not uid:
            raise AiftError(f"{csv_path}: line {line}: empty 'seriesuid' value")
        xyz = []
        for c in ("coordx", "coordy", "coordz"):
            try:
                f = float(v[c])
            except ValueError:
                raise AiftError(f"{csv_path}: line {line}: {c} {v[c]!r} is not a number") from None
            if not math.isfinite(f):
                raise AiftError(f"{csv_path}: line {line}: {c} {v[c]!r} is not finite")
            xyz.append(f)
        raw = v.get("class", "")
        if raw in ("", "-1"):
            lab = -1
        elif raw in index:
            lab = index[raw]
        else:
            try:
                lab = int(raw)
            except ValueError:
                lab = None
            if lab is None or not 0 <= lab < len(class_names):
                raise AiftError(f"{csv_path}: line {line}: unknown class {raw!r} (expected 0..{len(class_names) - 1}, "
                                f"one of {list(class_names)}, or empty/-1 for unknown)")
        if "split" in cols:
            split.append(parse_split(csv_path, line, v["split"]))
        lines.append(line)
        uids.append(uid)
        points.append(xyz)
        labels.append(lab)
    return {"lines": lines, "uids": uids, "points": np.asarray(points, np.float64).reshape(-1, 3),
            "labels": np.asarray(labels, np.int64), "split": np.asarray(split, np.uint8) if "split" in cols else None}


def volume_geometry(src: VolumeSource) -> VolumeGeometry:
    """The geometry of a volume from its header only (no pixels decoded); AiftError if unreadable."""
    if src.series is not None:
        return src.series.geometry
    sitk = load_simpleitk()
    r = sitk.ImageFileReader()
    r.SetFileName(str(src.path))
    try:
        r.ReadImageInformation()
    except Exception as e:  # noqa: BLE001 - any reader failure means an unreadable file
        raise AiftError(f"{src.path}: cannot read volume file ({first_line(e)})") from None
    _check_scalar_3d(src.path, r.GetDimension(), r.GetNumberOfComponents(), r.GetSize())
    return VolumeGeometry.of(r)


def _check_scalar_3d(path, dim, comps, size):
    if dim != 3 or min(size) < 1:
        raise AiftError(f"{path}: not a 3-D volume (dimension {dim}, size {tuple(size)})")
    if comps != 1:
        raise AiftError(f"{path}: volume has {comps} components per voxel; expected a scalar (grayscale) volume")


def read_volume(src):
    """Read a volume (a :class:`VolumeSource`, a volume file or a DICOM series folder) with SimpleITK.

    Returns a 3-D scalar ``SimpleITK.Image`` (float32) in stored units (CT: Hounsfield units) with
    its world geometry (LPS mm). Raises AiftError naming the file for anything unreadable.

    Example:
        >>> img = read_volume("scans/patient07")        # a DICOM series folder
        >>> img.GetSpacing(), img.GetOrigin()
    """
    if not isinstance(src, VolumeSource):
        p = Path(src)
        if not p.exists():
            raise AiftError(f"{p}: no such file or folder")
        src = VolumeSource(p.name, p, dicom_series(p)) if p.is_dir() else VolumeSource(volume_id(p) or p.stem, p)
    sitk = load_simpleitk()
    try:
        if src.series is not None:
            r = sitk.ImageSeriesReader()
            r.SetFileNames([str(f) for f in src.series.files])
            img = r.Execute()
        else:
            img = sitk.ReadImage(str(src.path))
    except Exception as e:  # noqa: BLE001
        raise AiftError(f"{src.path}: cannot read volume ({first_line(e)})") from None
    _check_scalar_3d(src.path, img.GetDimension(), img.GetNumberOfComponentsPerPixel(), img.GetSize())
    return sitk.Cast(img, sitk.sitkFloat32)


def check_resampled_size(path, geo: VolumeGeometry, spacing: float) -> None:
    """Refuse a ``spacing`` that would resample ``geo``'s volume to more than MAX_RESAMPLED_VOXELS voxels.

    Example:
        >>> geo = VolumeGeometry((512, 512, 300), (0, 0, 0), (0.7, 0.7, 1.0), tuple(np.eye(3).ravel()))
        >>> check_resampled_size("ct.nii", geo, 1.0)      # 359 x 359 x 300 voxels: fine
        >>> check_resampled_size("ct.nii", geo, 0.0001)   # AiftError naming the spacing
    """
    c = geo.corners()
    extent = c.max(axis=0) - c.min(axis=0)
    sizes = [max(1.0, math.ceil(e / spacing - 1e-6)) for e in extent]
    voxels = math.prod(sizes)
    if min(sizes) < 2:
        raise AiftError(f"spacing (mm) {spacing:g}: {path} ({' x '.join(f'{e:.1f}' for e in extent)} mm) would be "
                        f"resampled to {' x '.join(f'{v:.0f}' for v in sizes)} voxels; give a spacing of at most "
                        f"{min(extent) / 2:.3g} mm (2 voxels along every axis)")
    if voxels > MAX_RESAMPLED_VOXELS:
        dims = " x ".join(f"{v:.3g}" for v in sizes)
        raise AiftError(f"spacing (mm) {spacing:g}: {path} ({' x '.join(f'{e:.1f}' for e in extent)} mm) would be "
                        f"resampled to {dims} voxels, more than {MAX_RESAMPLED_VOXELS}; give a larger spacing "
                        f"(e.g. {max(spacing, (math.prod(extent) / MAX_RESAMPLED_VOXELS) ** (1 / 3)) * 1.01:.2g} mm "
                        f"or more)")


def _check_float(value, name, lo=None, hi=None, lo_open=False):
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise AiftError(f"{name} must be a number; got {value!r}") from None
    bad = not math.isfinite(f) or (lo is not None and (f <= lo if lo_open else f < lo)) or (hi is not None and f > hi)
    if bad:
        rng = f"{'(' if lo_open else '['}{lo}, {hi if hi is not None else 'inf'}]"
        raise AiftError(f"{name} must be in {rng}; got {value!r}")
    return f


def import_volumes(images, candidates, out_path, m: int = 8, patch_size: int = 32, spacing: float = 1.0,
                   window="auto", seed: int = 0, *, fov=None, scales=(1.0, 1.2, 1.5), max_shift: float = 0.1,
                   val_fraction: float = 0.1, test_fraction: float = 0.1, class_names=DEFAULT_CLASS_NAMES,
                   app: str | None = None, overwrite: bool = False, progress=None, warn=None) -> dict:
    """Import volumes + a candidate list as a 2.5-D candidate store (see the module docstring).

    Args:
        images: folder of volume files and/or DICOM series sub-folders.
        candidates: the candidate CSV (``seriesuid,coordX,coordY,coordZ[,class][,split]``).
        out_path: the ``.h5`` store; refused if it exists unless ``overwrite``.
        m: patches per candidate (patch 0 unaugmented).
        patch_size: patch side P in pixels.
        spacing: isotropic resampling in mm.
        window: intensity window: ``"LO,HI"``, ``(lo, hi)``, a preset (``lung``, ``mediastinum``,
            ``ctpa``, ``bone``, ``brain``) or ``"auto"`` (per volume: its 0.5-99.5 percentiles).
        seed: seed of the augmentation and of the split.
        fov: millimetres spanned by a patch at scale 1 (default ``patch_size * spacing``: one pixel per
            resampled voxel).
        scales, max_shift: augmentation: field-of-view scales and translation (fraction of the field of
            view per axis); in-plane rotations are uniform in [0, 360) degrees.
        val_fraction, test_fraction: fractions of volumes sent to val / test without a split column.
        class_names: names of the class indices (K >= 2).
        app: store ``app`` name; default ``"volumes:<images folder name>"``.
        progress: optional ``progress(volumes done, volumes total)``.
        warn: optional ``warn(message)`` for non-fatal problems (default :func:`warnings.warn`), e.g. a
            volume without candidates.

    Returns:
        summary dict: ``out``, ``n``, ``m``, ``patch_shape``, ``dtype``, ``class_names``, ``counts``,
        ``volumes``, ``warnings``.

    Raises:
        AiftError: one line naming the file and the problem; no output file is left behind.
    """
    images, csv_path = Path(images), Path(candidates)
    m = check_int(m, "m (patches per candidate)", 1)
    S = check_int(patch_size, "patch_size", 2)
    spacing = _check_float(spacing, "spacing (mm)", 0.0, lo_open=True)
    check_bag_size(m, S, 3, 1)
    seed = check_seed(seed)
    win = parse_window(window)
    fov_mm = S * spacing if fov is None else _check_float(fov, "fov (mm)", 0.0, MAX_FOV_MM, lo_open=True)
    try:
        scales = tuple(float(s) for s in scales)
    except (TypeError, ValueError):
        raise AiftError(f"scales must be numbers; got {scales!r}") from None
    if not scales or not all(math.isfinite(s) and 0 < s <= MAX_SCALE for s in scales):
        raise AiftError(f"scales must be positive numbers <= {MAX_SCALE:g}; got {scales!r}")
    if fov_mm * max(scales) > MAX_FOV_MM:
        given = f"patch_size {S} x spacing {spacing:g} mm" if fov is None else f"fov {fov_mm:g} mm"
        raise AiftError(f"a patch would span {given} x scale {max(scales):g}; at most {MAX_FOV_MM:g} mm: "
                        f"give a smaller {'spacing' if fov is None else 'fov'} or scale")
    max_shift = _check_float(max_shift, "max_shift", 0.0, 0.5)
    vf, tf = check_fractions(val_fraction, test_fraction)
    if isinstance(class_names, str) or len(class_names) < 2 or len(set(class_names)) != len(class_names) \
            or any(not str(c).strip() for c in class_names):
        raise AiftError(f"class_names must be at least 2 distinct non-empty names; got {class_names!r}")
    class_names = [str(c) for c in class_names]
    out = check_out(out_path, overwrite, inputs=[csv_path])
    warn = warn or (lambda msg: warnings.warn(msg, stacklevel=3))

    # -- everything checkable without pixels
    cand = read_candidates(csv_path, class_names)
    vols = find_volumes(images)
    for src in vols.values():
        if same_file(out, src.path):
            raise AiftError(f"{out}: output would overwrite the input volume {src.path}")
    alias = {s.uid: vid for vid, s in vols.items() if s.uid is not None and s.uid not in vols}
    vids = []
    for line, uid in zip(cand["lines"], cand["uids"]):
        vid = uid if uid in vols else alias.get(uid)
        if vid is None:
            known = ", ".join(list(vols)[:3]) + (", ..." if len(vols) > 3 else "")
            raise AiftError(f"{csv_path}: line {line}: seriesuid {uid!r} has no volume in {images} "
                            f"({len(vols)} volumes: {known})")
        vids.append(vid)
    used = sorted(set(vids))
    messages = [f"{vols[vid].path}: volume {vid!r} has no candidates in {csv_path.name}; skipped"
                for vid in vols if vid not in used]  # reported once every check has passed
    gindex = {vid: g for g, vid in enumerate(used)}
    groups = np.asarray([gindex[v] for v in vids], np.int64)
    geos = {}
    for vid in used:
        geo = volume_geometry(vols[vid])
        rows = np.flatnonzero(groups == gindex[vid])
        inside = geo.contains(cand["points"][rows])
        if not inside.all():
            i = int(rows[np.flatnonzero(~inside)[0]])
            x, y, z = cand["points"][i]
            raise AiftError(f"{csv_path}: line {cand['lines'][i]}: candidate ({x:g}, {y:g}, {z:g}) mm is outside "
                            f"volume {vid!r} ({vols[vid].path.name}: {geo.extent_text()} LPS)")
        check_resampled_size(vols[vid].path, geo, spacing)
        geos[vid] = geo
    labels = cand["labels"]
    if cand["split"] is not None:
        split = cand["split"]
        check_group_splits(csv_path, cand["lines"], vids, split)
        if not (split == 0).any():
            raise AiftError(f"{csv_path}: no candidate has split 'train' (the active-learning pool would be empty)")
    else:
        split = group_split(groups, np.maximum(labels, 0), vf, tf, seed)
        if not (split == 0).any():
            raise AiftError(f"{csv_path}: the split left no training volumes; lower val/test fractions")

    if (labels >= 0).all():  # fully labelled: every class must have a candidate (else refused)
        dense_labels(labels, str(csv_path), class_names, source="classes")
    for msg in messages:
        warn(msg)

    # -- stream the volumes
    from aift_tf.store import StoreWriter

    n = len(labels)
    attrs = {
        "importer": "volumes", "source": images.name, "candidates": csv_path.name, "group_kind": "volume",
        "group_names": used, "patch_kind": "2.5d", "channels": list(PLANE_NAMES), "num_volumes": len(used),
        "coordinates": "world mm, LPS (SimpleITK / DICOM patient coordinates)",
        "spacing_mm": spacing, "fov_mm": fov_mm, "fov_scales": list(scales), "max_shift": max_shift,
        "patch_size": S, "m": m, "seed": int(seed) if seed is not None else -1,
        "plain_first": True,
    }
    attrs.update(describe_window(window))
    volume_windows = {}
    if win is None:
        attrs["window_percentiles"] = [0.5, 99.5]
    with StoreWriter(out, n, m, (S, S, 3), np.uint8, app=app or f"volumes:{images.resolve().name}",
                     class_names=class_names, attrs=attrs) as w:
        for done, vid in enumerate(used, 1):
            rows = np.flatnonzero(groups == gindex[vid])
            img = read_volume(vols[vid])
            got = VolumeGeometry.of(img)
            if got.size != geos[vid].size:
                raise AiftError(f"{vols[vid].path}: read {got.size} voxels but the header says {geos[vid].size}")
            if win is None:
                vw = auto_window(load_simpleitk().GetArrayViewFromImage(img))
                volume_windows[vid] = [vw[0], vw[1]]
            else:
                vw = win
            vol, grid = resample_isotropic(img, spacing, cval=vw[0])
            del img
            bags = world_patches(vol, grid, cand["points"][rows], m, S, fov_mm, vw, scales=scales,
                                 max_shift=max_shift, seeds=[child_seed(seed, int(i)) for i in rows])
            del vol
            # write contiguous runs of candidate ids
            breaks = np.flatnonzero(np.diff(rows) != 1) + 1
            for run, b in zip(np.split(rows, breaks), np.split(bags, breaks)):
                a = int(run[0])
                w.write(a, b, labels[run], groups[run], split[run])
            if progress is not None:
                progress(done, len(used))
        if volume_windows:
            w.update_attrs({"volume_windows": volume_windows})
    counts = {name: int((split == i).sum()) for i, name in enumerate(SPLIT_NAMES)}
    return {"out": out, "n": n, "m": m, "patch_shape": (S, S, 3), "dtype": "uint8", "class_names": class_names,
            "counts": counts, "volumes": len(used), "warnings": messages}
