"""DICOM helpers of the importers: series checks with pydicom, pixels with SimpleITK.

* :func:`dicom_series` -- the files of one folder as one validated 3-D series: readable DICOM with
  pixel data, a single SeriesInstanceUID, one ImageOrientationPatient / pixel spacing / matrix
  size, and slice positions on one line along the slice normal with uniform spacing. Returns the
  files sorted along the normal and the series' geometry (LPS mm), without decoding any pixels.
* :func:`read_dicom_image` -- one 2-D DICOM image (radiograph) as uint8 through an intensity window
  (MONOCHROME1 inverted so that dense is bright).

Headers are read by pydicom. Series pixels are decoded by SimpleITK (GDCM: compressed transfer
syntaxes, RescaleSlope/Intercept applied, so CT values are Hounsfield units); 2-D images by pydicom
(modality LUT applied; SimpleITK as the fallback decoder), because GDCM inverts MONOCHROME1 pixels
before rescaling, which would put them outside any window given in stored units.

Example:
    >>> s = dicom_series("scans/patient07")
    >>> s.uid, len(s.files), s.geometry.spacing
    ('1.2.826.0.1....', 120, (0.7, 0.7, 2.5))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aift_tf.errors import AiftError
from aift_tf.volumes import VolumeGeometry, apply_window, auto_window, load_simpleitk

__all__ = ["DICOM_EXTENSIONS", "DicomSeries", "dicom_series", "read_dicom_header", "read_dicom_image",
           "first_line"]

DICOM_EXTENSIONS = (".dcm", ".dicom")
_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_ORIENTATION_TOL = 1e-4   # direction cosines
_POSITION_TOL = 1e-2      # fraction of a voxel


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (or its type name)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def read_dicom_header(path) -> "object":
    """A pydicom dataset of ``path`` with large values (pixels) left on disk; AiftError if unreadable."""
    import pydicom

    path = Path(path)
    try:
        return pydicom.dcmread(path, defer_size="1 KB")
    except Exception as e:  # noqa: BLE001 - any parser failure means an unreadable file
        raise AiftError(f"{path}: unreadable DICOM file ({first_line(e)})") from None


def _has_pixels(ds) -> bool:
    return any(t in ds for t in _PIXEL_TAGS)


def _floats(ds, path, tag, n):
    v = ds.get(tag)
    if v is None:
        raise AiftError(f"{path}: DICOM file lacks {tag}, needed to place the slice in the volume")
    try:
        out = [float(x) for x in (v if n > 1 else [v])]
    except (TypeError, ValueError):
        raise AiftError(f"{path}: DICOM {tag} {v!r} is not {n} number(s)") from None
    if len(out) != n:
        raise AiftError(f"{path}: DICOM {tag} {list(v)!r} must have {n} values")
    return np.asarray(out)


@dataclass(frozen=True)
class DicomSeries:
    """One validated DICOM series: ``files`` sorted along the slice normal, ``uid``, ``geometry``."""

    folder: Path
    files: tuple
    uid: str
    geometry: VolumeGeometry


def dicom_series(folder) -> DicomSeries:
    """Validate the DICOM files directly in ``folder`` as one 3-D series (see the module docstring).

    Hidden files are skipped; every other file must be DICOM. Raises :class:`AiftError` naming the
    folder or file for: no files, an unreadable file, a file without pixel data, two series, a
    missing or differing orientation / spacing / size, two slices at one position, slice positions
    off the normal (gantry tilt) or non-uniform slice spacing (missing slices).
    """
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise AiftError(f"{folder}: DICOM series folder holds no files")
    headers = [read_dicom_header(p) for p in files]
    for p, ds in zip(files, headers):
        if not _has_pixels(ds):
            raise AiftError(f"{p}: DICOM file has no pixel data")
    uids = {}
    for p, ds in zip(files, headers):
        uid = str(ds.get("SeriesInstanceUID", "")).strip()
        if not uid:
            raise AiftError(f"{p}: DICOM file has no SeriesInstanceUID")
        uids.setdefault(uid, p)
    if len(uids) > 1:
        shown = ", ".join(f"{u} ({f.name})" for u, f in list(uids.items())[:3])
        raise AiftError(f"{folder}: holds {len(uids)} DICOM series ({shown}); put each series in its own folder")
    uid = next(iter(uids))
    if len(files) == 1:
        frames = int(headers[0].get("NumberOfFrames", 1) or 1)
        if frames < 2:
            raise AiftError(f"{folder}: a DICOM series of one 2-D slice is not a volume (need >= 2 slices)")
        raise AiftError(f"{files[0]}: multi-frame DICOM volumes are not supported yet; export the series as "
                        "one file per slice (or as NIfTI)")
    iop = [_floats(ds, p, "ImageOrientationPatient", 6) for p, ds in zip(files, headers)]
    ipp = np.stack([_floats(ds, p, "ImagePositionPatient", 3) for p, ds in zip(files, headers)])
    spc = [_floats(ds, p, "PixelSpacing", 2) for p, ds in zip(files, headers)]
    shape = [(int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)) for ds in headers]
    for p, o, s, sh in zip(files, iop, spc, shape):
        if np.abs(o - iop[0]).max() > _ORIENTATION_TOL:
            raise AiftError(f"{p}: ImageOrientationPatient {o.tolist()} differs from {iop[0].tolist()} in "
                            f"{files[0].name} (inconsistent orientation within the series)")
        if np.abs(s - spc[0]).max() > 1e-4 * max(1.0, spc[0].max()):
            raise AiftError(f"{p}: PixelSpacing {s.tolist()} differs from {spc[0].tolist()} in {files[0].name}")
        if sh != shape[0]:
            raise AiftError(f"{p}: {sh[0]}x{sh[1]} pixels differs from {shape[0][0]}x{shape[0][1]} in "
                            f"{files[0].name}")
    if min(shape[0]) < 1:
        raise AiftError(f"{files[0]}: DICOM file lacks Rows/Columns")
    row, col = iop[0][:3], iop[0][3:]
    normal = np.cross(row, col)
    if abs(np.linalg.norm(normal) - 1.0) > 1e-3 or abs(row @ col) > 1e-3:
        raise AiftError(f"{files[0]}: ImageOrientationPatient {iop[0].tolist()} is not two orthonormal vectors")
    d = ipp @ normal
    order = np.argsort(d, kind="stable")
    d_sorted = d[order]
    gaps = np.diff(d_sorted)
    pixel = float(min(spc[0]))
    if (gaps < _POSITION_TOL * pixel).any():
        i = int(np.flatnonzero(gaps < _POSITION_TOL * pixel)[0])
        raise AiftError(f"{folder}: two slices at the same position {d_sorted[i]:.3f} mm "
                        f"({files[order[i]].name}, {files[order[i + 1]].name})")
    off = ipp - ipp[order[0]] - np.outer(d - d_sorted[0], normal)
    if np.abs(off).max() > max(_POSITION_TOL * pixel, 1e-3) * 10:
        i = int(np.abs(off).max(axis=1).argmax())
        raise AiftError(f"{files[i]}: ImagePositionPatient {ipp[i].tolist()} is off the slice normal of the "
                        "series (gantry tilt or mixed stacks)")
    dz = float(np.median(gaps))
    if gaps.max() - gaps.min() > max(0.01 * dz, 1e-3):
        raise AiftError(f"{folder}: inconsistent slice spacing: gaps between {gaps.min():.3g} and "
                        f"{gaps.max():.3g} mm (missing or extra slices?)")
    direction = np.stack([row, col, normal], axis=1)  # columns = index axes i, j, k
    geo = VolumeGeometry(size=(shape[0][1], shape[0][0], len(files)),
                         origin=tuple(float(v) for v in ipp[order[0]]),
                         spacing=(float(spc[0][1]), float(spc[0][0]), dz),
                         direction=tuple(float(v) for v in direction.ravel()))
    return DicomSeries(folder=folder, files=tuple(files[i] for i in order), uid=uid, geometry=geo)


def dicom_info(path) -> tuple:
    """(width, height, channels) of a 2-D DICOM image, checking it has pixel data."""
    ds = read_dicom_header(path)
    if not _has_pixels(ds):
        raise AiftError(f"{path}: DICOM file has no pixel data")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows < 1 or cols < 1:
        raise AiftError(f"{path}: DICOM file lacks Rows/Columns")
    return cols, rows, int(ds.get("SamplesPerPixel", 1) or 1)


def _voi_window(ds):
    """The file's own VOI window (first WindowCenter/WindowWidth), or None."""
    c, w = ds.get("WindowCenter"), ds.get("WindowWidth")
    if c is None or w is None:
        return None
    try:
        c = float(c[0] if hasattr(c, "__len__") and not isinstance(c, str) else c)
        w = float(w[0] if hasattr(w, "__len__") and not isinstance(w, str) else w)
    except (TypeError, ValueError, IndexError):
        return None
    if not (np.isfinite(c) and np.isfinite(w)) or w <= 0:
        return None
    return (c - w / 2.0, c + w / 2.0)


def _decode_2d(path: Path, ds) -> np.ndarray:
    """Pixels of a 2-D DICOM after the modality LUT (RescaleSlope/Intercept), MONOCHROME1 not inverted.

    pydicom decodes (uncompressed, RLE, and JPEG / JPEG 2000 through Pillow); if it has no decoder
    for the transfer syntax, SimpleITK (GDCM) decodes MONOCHROME2 and colour images.
    """
    from pydicom.pixels import apply_modality_lut

    try:
        a = ds.pixel_array
    except Exception as e:  # noqa: BLE001 - a missing decoder plugin or corrupt pixel data
        if str(ds.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1":
            raise AiftError(f"{path}: cannot decode DICOM pixels ({first_line(e)})") from None
        sitk = load_simpleitk()
        try:
            img = sitk.ReadImage(str(path))
        except Exception as e2:  # noqa: BLE001
            raise AiftError(f"{path}: cannot decode DICOM pixels ({first_line(e2)})") from None
        a = sitk.GetArrayFromImage(img)
        if img.GetDimension() == 3 and a.shape[0] == 1:
            a = a[0]
        return a
    if int(ds.get("SamplesPerPixel", 1) or 1) == 1:
        a = apply_modality_lut(a, ds)
    return a


def read_dicom_image(path, window=None) -> np.ndarray:
    """One 2-D DICOM image as uint8 (H, W) (or (H, W, 3) for colour).

    Args:
        path: the ``.dcm`` file.
        window: ``(lo, hi)`` in stored units after RescaleSlope/Intercept, or ``None`` for the
            file's own VOI window (WindowCenter/WindowWidth), else its 0.5-99.5 percentiles.
            MONOCHROME1 images are inverted after windowing (dense = bright); colour (RGB) images are
            used as they are.

    Raises:
        AiftError: unreadable file, no pixel data, not a single 2-D frame.

    Example:
        >>> read_dicom_image("chest.dcm", window=(-1000, 400)).shape
        (2048, 2048)
    """
    path = Path(path)
    ds = read_dicom_header(path)
    if not _has_pixels(ds):
        raise AiftError(f"{path}: DICOM file has no pixel data")
    a = np.asarray(_decode_2d(path, ds))
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if a.ndim == (3 if samples == 1 else 4):
        raise AiftError(f"{path}: DICOM file holds {a.shape[0]} frames; expected one 2-D image")
    if samples == 3 and a.ndim == 3:
        return np.clip(a, 0, 255).astype(np.uint8) if a.dtype != np.uint8 else a
    if samples != 1 or a.ndim != 2:
        raise AiftError(f"{path}: DICOM image of shape {a.shape} with {samples} samples per pixel is not supported")
    win = window if window is not None else (_voi_window(ds) or auto_window(a))
    out = apply_window(a.astype(np.float64), win)
    if str(ds.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1":
        out = 255 - out
    return out
