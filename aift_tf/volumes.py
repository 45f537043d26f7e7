"""3-D scans -> 2.5-D candidate patches: intensity windows, geometry, isotropic resampling, the cutter.

A candidate in a CT/MR volume (a lesion candidate, a PE candidate, a LUNA16 nodule candidate) is
shown to a 2-D CNN as a *2.5-D patch*: the axial, coronal and sagittal planes through the candidate,
each ``P x P`` pixels, stacked as the three channels (Zhou et al., AIFT, CVPR 2017; Tajbakhsh et al.
for PE). A candidate is a bag of ``m`` such patches under random in-plane rotation, field-of-view
scale and 3-D translation; **patch 0 is the unaugmented view centred on the candidate** (by default).

The pieces (numpy/scipy; SimpleITK only in :func:`resample_isotropic` and
:meth:`VolumeGeometry.of`, imported lazily):

* :data:`WINDOW_PRESETS`, :func:`parse_window`, :func:`apply_window`, :func:`auto_window` --
  stored intensities (CT: Hounsfield units) -> [0, 255] through a window ``[lo, hi]``.
* :class:`VolumeGeometry` -- size / origin / spacing / direction of an image in world coordinates
  (LPS millimetres, as SimpleITK and DICOM report them) and world <-> continuous index.
* :func:`resample_isotropic` -- a SimpleITK image -> a numpy volume ``(z, y, x)`` on an isotropic
  grid aligned with the patient axes (:data:`DISPLAY_DIRECTION`).
* :func:`augmentation_params` and :func:`extract_patches` -- the 2.5-D cutter on an isotropic
  numpy volume (voxel coordinates ``(z, y, x)``); the simulated PE app uses the same code.
* :func:`world_patches` -- all of the above for candidates given in world millimetres.

Orientation of the planes. On the resampled grid, array axis 0 runs superior -> inferior, axis 1
anterior -> posterior and axis 2 patient right -> left (LPS x), so the unaugmented planes look like a
radiology viewer shows them: axial seen from the feet (rows anterior -> posterior, columns right ->
left), coronal seen from the front (rows superior -> inferior, columns right -> left), sagittal seen
from the patient's left (rows superior -> inferior, columns anterior -> posterior).

Example:
    >>> import numpy as np
    >>> vol = np.full((40, 40, 40), -1000.0, np.float32); vol[20, 20, 20] = 400.0
    >>> angle, scale, shift = augmentation_params(np.random.default_rng(0), 1, 4, (1.0, 1.2), 0.1)
    >>> extract_patches(vol, [[20, 20, 20]], angle, scale, shift, 16, 16.0, (-1000, 400)).shape
    (1, 4, 16, 16, 3)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from aift_tf.errors import AiftError

__all__ = [
    "PLANES", "PLANE_NAMES", "WINDOW_PRESETS", "DISPLAY_DIRECTION", "parse_window", "describe_window",
    "apply_window", "auto_window", "VolumeGeometry", "resample_isotropic", "augmentation_params",
    "extract_patches", "world_patches", "load_simpleitk",
]

# in-plane axes (row axis, column axis) of the three orthogonal planes, in (z, y, x) array order
PLANES = (("axial", (1, 2)), ("coronal", (0, 2)), ("sagittal", (0, 1)))
PLANE_NAMES = tuple(name for name, _ in PLANES)

# Named intensity windows [lo, hi] in Hounsfield units (level +- width / 2).
WINDOW_PRESETS = {
    "lung": (-1350.0, 150.0),         # W 1500, L -600
    "mediastinum": (-125.0, 225.0),   # W 350, L 50 (soft tissue)
    "ctpa": (-100.0, 500.0),          # W 600, L 200: contrast-filled pulmonary arteries vs clots (the simulated PE app)
    "bone": (-500.0, 1500.0),         # W 2000, L 500
    "brain": (0.0, 80.0),             # W 80, L 40
}
AUTO = "auto"
AUTO_PERCENTILES = (0.5, 99.5)

# ITK direction (columns = world directions of the index axes i, j, k) of the resampled grid:
# i -> patient left (+x), j -> posterior (+y), k -> inferior (-z); see the module docstring.
DISPLAY_DIRECTION = np.diag([1.0, 1.0, -1.0])

# sample points per map_coordinates call in extract_patches (bounds its memory to ~100 MB)
_CHUNK_POINTS = 1 << 22


# ------------------------------------------------------------------------------------------------
# intensity windows
# ------------------------------------------------------------------------------------------------


def parse_window(value):
    """An intensity window from a preset name, ``"LO,HI"``, a pair, or ``"auto"``/``None``.

    Args:
        value: ``None`` or ``"auto"`` (per image / volume: its 0.5-99.5 percentiles), a name in
            :data:`WINDOW_PRESETS` (``lung``, ``mediastinum``, ``ctpa``, ``bone``, ``brain``), a
            string ``"LO,HI"`` or a pair of numbers.

    Returns:
        ``None`` for auto, else ``(lo, hi)`` floats with ``lo < hi``.

    Raises:
        AiftError: unknown preset, unparsable text, non-finite values or ``lo >= hi``.

    Example:
        >>> parse_window("ctpa"), parse_window("-1000,400"), parse_window("auto")
        ((-100.0, 500.0), (-1000.0, 400.0), None)
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text == AUTO:
            return None
        if text in WINDOW_PRESETS:
            return WINDOW_PRESETS[text]
        parts = [p for p in text.replace(":", ",").split(",")]
        if len(parts) != 2:
            raise AiftError(f"window {value!r} must be LO,HI (e.g. -1000,400), 'auto' or a preset: "
                            f"{', '.join(WINDOW_PRESETS)}")
    else:
        try:
            parts = list(value)
        except TypeError:
            raise AiftError(f"window {value!r} must be a (lo, hi) pair, 'auto' or a preset name") from None
        if len(parts) != 2:
            raise AiftError(f"window {value!r} must be a (lo, hi) pair")
    try:
        lo, hi = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise AiftError(f"window {value!r}: LO and HI must be numbers") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise AiftError(f"window {value!r}: LO and HI must be finite")
    if lo >= hi:
        raise AiftError(f"window {value!r}: LO must be < HI (got LO={lo:g}, HI={hi:g})")
    return (lo, hi)


def describe_window(value) -> dict:
    """Store attributes recording a window: ``{"window": [lo, hi] or "auto", "window_preset": name or None}``."""
    win = parse_window(value)
    preset = value.strip().lower() if isinstance(value, str) and value.strip().lower() in WINDOW_PRESETS else None
    return {"window": AUTO if win is None else [win[0], win[1]], "window_preset": preset}


def apply_window(values, window) -> np.ndarray:
    """Map intensities to uint8: ``lo -> 0``, ``hi -> 255``, linear in between, clipped outside.

    Non-finite values (NaN background of some NIfTI / float TIFF files) read as ``lo`` (black), ``+inf`` as
    ``hi``: never the undefined result of casting NaN to uint8.

    Example:
        >>> apply_window(np.array([-1000.0, 0.0, 400.0, np.nan]), (-1000.0, 400.0)).tolist()
        [0, 182, 255, 0]
    """
    lo, hi = window
    v = np.asarray(values)
    if v.dtype.kind == "f" and not np.isfinite(v).all():
        v = np.nan_to_num(v, nan=lo, posinf=hi, neginf=lo)
    return np.clip(np.round((v - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)


def auto_window(values, percentiles=AUTO_PERCENTILES) -> tuple:
    """The ``percentiles`` of the finite ``values`` as a window (``hi = lo + 1`` for a constant image)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (0.0, 1.0)
    lo, hi = (float(x) for x in np.percentile(v, percentiles))
    if hi <= lo:
        hi = lo + 1.0
    return (lo, hi)


# ------------------------------------------------------------------------------------------------
# geometry
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VolumeGeometry:
    """Where a volume's voxels are in the world (LPS millimetres).

    ``size``, ``origin`` and ``spacing`` are in ITK index order (i, j, k) = (x, y, z) of the
    image; ``direction`` is the 3 x 3 matrix whose columns are the world directions of the index
    axes. World point of continuous index ``u``: ``origin + direction @ (spacing * u)``; voxel
    centres are at integer indices, so the volume covers indices ``-0.5 .. size - 0.5``.
    """

    size: tuple
    origin: tuple
    spacing: tuple
    direction: tuple  # row-major 9 numbers

    @classmethod
    def of(cls, image) -> "VolumeGeometry":
        """Geometry of a SimpleITK image (or an ``ImageFileReader`` after ``ReadImageInformation``)."""
        return cls(tuple(int(v) for v in image.GetSize()), tuple(float(v) for v in image.GetOrigin()),
                   tuple(float(v) for v in image.GetSpacing()), tuple(float(v) for v in image.GetDirection()))

    @property
    def matrix(self) -> np.ndarray:
        return np.asarray(self.direction, np.float64).reshape(3, 3)

    def continuous_index(self, points) -> np.ndarray:
        """(k, 3) world points -> (k, 3) continuous indices (i, j, k)."""
        p = np.asarray(points, np.float64).reshape(-1, 3) - np.asarray(self.origin)
        a = self.matrix * np.asarray(self.spacing)[None, :]
        return np.linalg.solve(a, p.T).T

    def world(self, index) -> np.ndarray:
        """(k, 3) continuous indices (i, j, k) -> (k, 3) world points."""
        u = np.asarray(index, np.float64).reshape(-1, 3)
        return np.asarray(self.origin) + (self.matrix @ (u * np.asarray(self.spacing)).T).T

    def contains(self, points) -> np.ndarray:
        """Boolean (k,): the world point lies inside the volume (within half a voxel of a voxel centre)."""
        u = self.continuous_index(points)
        size = np.asarray(self.size, np.float64)
        return np.all((u >= -0.5 - 1e-6) & (u <= size - 0.5 + 1e-6), axis=1)

    def corners(self) -> np.ndarray:
        """The 8 world corners (8, 3) of the volume's extent."""
        s = np.asarray(self.size, np.float64)
        idx = np.array([[a, b, c] for a in (-0.5, s[0] - 0.5) for b in (-0.5, s[1] - 0.5) for c in (-0.5, s[2] - 0.5)])
        return self.world(idx)

    def extent_text(self) -> str:
        """``x a..b, y c..d, z e..f mm`` (the world bounding box, for error messages)."""
        c = self.corners()
        lo, hi = c.min(axis=0), c.max(axis=0)
        return ", ".join(f"{ax} {a:.1f}..{b:.1f}" for ax, a, b in zip("xyz", lo, hi)) + " mm"


def load_simpleitk():
    """The ``SimpleITK`` module (imported on first use; an AiftError if it is missing)."""
    try:
        import SimpleITK as sitk
    except ImportError as e:  # pragma: no cover - a regular dependency
        raise AiftError(f"reading volumes needs SimpleITK (pip install SimpleITK): {e}") from None
    return sitk


def resample_isotropic(image, spacing: float = 1.0, cval: float = 0.0):
    """Resample a SimpleITK image (trilinear) onto an isotropic grid aligned with the patient axes.

    The new grid has spacing ``spacing`` mm along every axis, direction :data:`DISPLAY_DIRECTION`
    (see the module docstring) and covers the image's whole world bounding box; points outside the
    image read ``cval``.

    Args:
        image: a 3-D scalar ``SimpleITK.Image`` (any pixel type, any direction / spacing).
        spacing: output voxel size in mm (> 0).
        cval: value outside the input.

    Returns:
        ``(volume, geometry)``: float32 array ``(z, y, x)`` = ITK ``(k, j, i)`` and its
        :class:`VolumeGeometry`.

    Example:
        >>> vol, geo = resample_isotropic(sitk.ReadImage("scan.nii.gz"), spacing=1.0, cval=-1000.0)
    """
    sitk = load_simpleitk()
    spacing = float(spacing)
    if not (math.isfinite(spacing) and spacing > 0):
        raise AiftError(f"spacing must be a positive number of mm; got {spacing!r}")
    geo = VolumeGeometry.of(image)
    d = DISPLAY_DIRECTION
    q = geo.corners() @ d          # corner coordinates along the output axes (d is orthonormal)
    lo, hi = q.min(axis=0), q.max(axis=0)
    size = [max(1, int(math.ceil((b - a) / spacing - 1e-6))) for a, b in zip(lo, hi)]
    origin = d @ (lo + 0.5 * spacing)
    f = sitk.ResampleImageFilter()
    f.SetOutputSpacing([spacing] * 3)
    f.SetOutputOrigin([float(v) for v in origin])
    f.SetOutputDirection([float(v) for v in d.ravel()])
    f.SetSize(size)
    f.SetInterpolator(sitk.sitkLinear)
    f.SetDefaultPixelValue(float(cval))
    f.SetTransform(sitk.Transform())
    f.SetOutputPixelType(sitk.sitkFloat32)
    out = f.Execute(sitk.Cast(image, sitk.sitkFloat32))
    return sitk.GetArrayFromImage(out), VolumeGeometry.of(out)


# ------------------------------------------------------------------------------------------------
# the 2.5-D cutter
# ------------------------------------------------------------------------------------------------


def augmentation_params(rng, n, m, scales, max_shift, plain_first: bool = True):
    """Random (angle, scale, 3-D shift as a fraction of the field of view) per patch.

    Args:
        rng: a ``numpy.random.Generator``.
        n, m: candidates and patches per candidate.
        scales: field-of-view scales drawn uniformly from (e.g. ``(1.0, 1.2, 1.5)``).
        max_shift: shifts are uniform in ``[-max_shift, max_shift]`` of the field of view per axis.
        plain_first: patch 0 of every candidate is the unaugmented view (angle 0, scale 1, no
            shift). The draws are the same either way, so only patch 0 differs.

    Returns:
        ``angle`` (n, m) radians, ``scale`` (n, m), ``shift`` (n, m, 3) in (z, y, x) order.
    """
    angle = rng.uniform(0.0, 2 * np.pi, size=(n, m))
    scale = np.asarray(scales, dtype=np.float64)[rng.integers(len(scales), size=(n, m))]
    shift = rng.uniform(-max_shift, max_shift, size=(n, m, 3))
    if plain_first and m > 0:
        angle[:, 0] = 0.0
        scale[:, 0] = 1.0
        shift[:, 0] = 0.0
    return angle, scale, shift


def extract_patches(image, centres, angle, scale, shift, size, fov, window, cval=-1000.0):
    """2.5-D patches (n, m, size, size, 3) uint8 from an isotropic volume.

    For each candidate and augmentation, the three orthogonal planes through ``centre +
    shift * fov * scale`` are sampled on a ``size``x``size`` grid spanning ``fov * scale``
    voxels, rotated in plane by ``angle`` (trilinear interpolation), then windowed to uint8
    (``window`` = [lo, hi] -> [0, 255], :func:`apply_window`). Channel order: axial, coronal,
    sagittal (:data:`PLANES`). With angle 0, scale 1 and shift 0 the patch centre (between the
    two middle pixels for an even ``size``) is exactly the candidate centre.

    Sample points outside the volume read the constant ``cval`` (air, -1000 HU by default): no
    edge replication (which draws streaks) and no mirroring (which draws reflected anatomy).

    Args:
        image: (Z, Y, X) float volume on an isotropic grid.
        centres: (n, 3) candidate centres in voxel coordinates (z, y, x).
        angle, scale, shift: from :func:`augmentation_params`.
        size: patch side in pixels.
        fov: voxels spanned by a patch at scale 1.
        window: (lo, hi) intensity window.
        cval: value outside the volume.
    """
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 3)
    n, m = angle.shape
    out = np.zeros((n, m, size, size, 3), np.uint8)
    if n == 0:
        return out
    step = max(1, _CHUNK_POINTS // max(1, m * size * size))
    for a in range(0, n, step):  # map_coordinates is pointwise: chunking changes nothing
        b = min(n, a + step)
        out[a:b] = _extract(image, centres[a:b], angle[a:b], scale[a:b], shift[a:b], size, fov, window, cval)
    return out


def _extract(image, centres, angle, scale, shift, size, fov, window, cval):
    n, m = angle.shape
    out = np.zeros((n, m, size, size, 3), np.uint8)
    half = 0.5 * (size - 1) / size  # pixel centres span the field of view
    u = np.linspace(-half, half, size)
    uu, vv = np.meshgrid(u, u, indexing="ij")  # (size, size) in units of the field of view
    ext = fov * scale  # (n, m)
    ca, sa = np.cos(angle), np.sin(angle)
    # rotated in-plane coordinates (n, m, size, size)
    r_row = (ca[..., None, None] * uu - sa[..., None, None] * vv) * ext[..., None, None]
    r_col = (sa[..., None, None] * uu + ca[..., None, None] * vv) * ext[..., None, None]
    ctr = centres[:, None, :] + shift * ext[..., None]  # (n, m, 3)
    for ch, (_, (ra, cb)) in enumerate(PLANES):
        coords = np.broadcast_to(ctr[:, :, :, None, None], (n, m, 3, size, size)).copy()
        coords[:, :, ra] += r_row
        coords[:, :, cb] += r_col
        vals = ndi.map_coordinates(image, np.moveaxis(coords, 2, 0).reshape(3, -1), order=1,
                                   mode="constant", cval=float(cval)).reshape(n, m, size, size)
        out[..., ch] = apply_window(vals, window)
    return out


def world_patches(volume, geometry, points, m, size, fov_mm, window, *, scales=(1.0, 1.2, 1.5),
                  max_shift=0.1, seeds=None, cval=None) -> np.ndarray:
    """2.5-D patch bags of candidates given in world millimetres (LPS) on a resampled volume.

    Args:
        volume, geometry: from :func:`resample_isotropic` (isotropic, :data:`DISPLAY_DIRECTION`).
        points: (k, 3) candidate positions, world mm (x, y, z) LPS.
        m, size: patches per candidate and patch side.
        fov_mm: millimetres spanned by a patch at scale 1.
        window: (lo, hi).
        scales, max_shift: augmentation (see :func:`augmentation_params`); patch 0 is unaugmented.
        seeds: one seed (int or ``SeedSequence``) per candidate; its augmentation depends on it only.
        cval: value outside the volume (default: ``window[0]``, i.e. black).

    Returns:
        (k, m, size, size, 3) uint8.

    Example:
        >>> vol, geo = resample_isotropic(image, 1.0, cval=-1000.0)
        >>> bags = world_patches(vol, geo, [[-12.5, 30.0, -140.0]], 8, 32, 32.0, (-1000, 400), seeds=[0])
    """
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    k = len(pts)
    if seeds is None:
        seeds = list(range(k))
    spacing = float(geometry.spacing[0])
    centres = geometry.continuous_index(pts)[:, ::-1]  # (i, j, k) -> array (z, y, x)
    params = [augmentation_params(np.random.default_rng(s), 1, m, scales, max_shift) for s in seeds]
    if k:
        angle, scale, shift = (np.concatenate([p[i] for p in params]) for i in range(3))
    else:
        angle, scale, shift = np.zeros((0, m)), np.zeros((0, m)), np.zeros((0, m, 3))
    return extract_patches(volume, centres, angle, scale, shift, size, fov_mm / spacing, window,
                           cval=window[0] if cval is None else cval)
