"""Patch-bag augmentation: turn one image into the m patches of an AIFT candidate.

In AIFT (Zhou et al., CVPR 2017) every candidate is a *bag* of ``m`` patches made from one image by
data augmentation; all patches inherit the candidate's label and the model's disagreement across them
drives selection. This module makes those bags, with numpy/scipy only.

The augmentation
----------------
Patch ``k`` is a square crop of the image resampled to ``patch_size × patch_size``:

* **patch 0** (when ``include_full=True``, the default) is the plain full image resized to
  ``patch_size × patch_size`` (non-square images are stretched), without flips or rotations, so every
  bag contains one undistorted view;
* every other patch draws independently

  - a **scale** ``s ~ U(scale_range)``: the crop side is ``s · min(H, W)`` (``s < 1`` zooms in),
  - a **translation**: the crop centre is uniform over the positions that keep the (rotated) crop
    inside the image (centred when it cannot fit),
  - an optional **small-angle rotation** ``θ ~ U(−rotate_degrees, +rotate_degrees)`` (off by default),
  - a **horizontal flip** with probability ½ (``flips=True``),
  - a **90° rotation** by ``k · 90°``, ``k`` uniform in {0, 1, 2, 3} (``rot90=True``).

Resampling is bilinear (``scipy.ndimage.map_coordinates``, ``order=1``, ``mode="reflect"`` so that
rotated corners that leave the image are mirrored, not black). When crops are larger than the patch
(downsampling) the image is first reduced by an integer factor ``r = floor(smallest crop / patch_size)``
with ``r × r`` block means, and each output pixel then averages a ``q × q`` grid of bilinear samples
(``q = ceil(crop side / (r · patch_size))``) — box anti-aliasing — so large images neither alias nor
cost much.

Determinism
-----------
The seven random numbers of each patch come from one ``numpy.random.default_rng`` per image, in a fixed
order that does not depend on which options are enabled. :func:`make_patch_bags` gives image ``i`` the
child seed ``SeedSequence(seed, spawn_key=(ids[i],))`` (see :func:`child_seed`), so an image's bag
depends only on ``(seed, its id)`` — not on the batch it was processed in, nor on the batch order::

    make_patch_bags(images, m, S, seed=s, ids=ids)[i] == make_patch_bag(images[i], m, S, seed=child_seed(s, ids[i]))

Dtypes: uint8 input → uint8 output (rounded); any other input → float32 output (bilinear resampling
and averaging never leave the input's value range).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from aift_tf.errors import AiftError

__all__ = ["Augmentation", "child_seed", "make_patch_bag", "make_patch_bags"]

# Bilinear sample points per map_coordinates call (bounds the coordinate arrays to ~24 MB).
_CHUNK_POINTS = 1 << 20
# Number of random numbers drawn per patch: scale, angle, centre-y, centre-x, flip, rot90, spare.
_DRAWS = 7


@dataclass(frozen=True)
class Augmentation:
    """Parameters of the patch-bag augmentation (see the module docstring)."""

    scale_range: tuple = (0.7, 1.0)
    rotate_degrees: float = 0.0
    flips: bool = True
    rot90: bool = True
    include_full: bool = True

    def __post_init__(self):
        try:
            lo, hi = (float(v) for v in self.scale_range)
        except (TypeError, ValueError):
            raise AiftError(f"scale_range must be two numbers (lo, hi); got {self.scale_range!r}") from None
        if not (0.0 < lo <= hi <= 1.0):
            raise AiftError(f"scale_range must satisfy 0 < lo <= hi <= 1; got ({lo}, {hi})")
        object.__setattr__(self, "scale_range", (lo, hi))
        rot = float(self.rotate_degrees)
        if not (math.isfinite(rot) and 0.0 <= rot <= 180.0):
            raise AiftError(f"rotate_degrees must be in [0, 180]; got {self.rotate_degrees!r}")
        object.__setattr__(self, "rotate_degrees", rot)

    def to_dict(self) -> dict:
        """JSON-serialisable description (stored in the candidate store's attrs)."""
        d = asdict(self)
        d["scale_range"] = list(self.scale_range)
        d["method"] = "aift_tf.importers.augment"
        return d


def child_seed(seed, index: int) -> np.random.SeedSequence:
    """The seed of image ``index`` under the batch seed ``seed`` (independent of batch composition)."""
    if isinstance(seed, np.random.SeedSequence):
        return np.random.SeedSequence(seed.entropy, spawn_key=tuple(seed.spawn_key) + (int(index),))
    return np.random.SeedSequence(seed, spawn_key=(int(index),))


def _as_hwc(image, what="image") -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3:
        raise AiftError(f"{what} must have shape (H, W) or (H, W, C); got shape {a.shape}")
    if a.shape[0] < 1 or a.shape[1] < 1 or a.shape[2] < 1:
        raise AiftError(f"{what} has an empty dimension: shape {a.shape}")
    return a


def _check_m_size(m, patch_size, h, w):
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise AiftError(f"m (patches per candidate) must be a positive integer; got {m!r}")
    if patch_size is None:
        patch_size = min(h, w)
    if isinstance(patch_size, bool) or not isinstance(patch_size, (int, np.integer)) or patch_size < 1:
        raise AiftError(f"patch_size must be a positive integer; got {patch_size!r}")
    return int(m), int(patch_size)


def _rng(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def _draw_params(rng: np.random.Generator, m: int) -> np.ndarray:
    return rng.random((m, _DRAWS))


def _affine(u: np.ndarray, h: int, w: int, aug: Augmentation):
    """Per-patch 2×2 matrices A and centres c (continuous pixel coords) from uniform draws u (m, 7).

    An output point with normalised coordinates (a, b) in [-½, ½]² samples the input at
    ``A @ (a, b) + c``, continuous coordinates where pixel p covers [p, p + 1).
    """
    m = u.shape[0]
    lo, hi = aug.scale_range
    side = (lo + (hi - lo) * u[:, 0]) * min(h, w)
    theta = np.deg2rad(aug.rotate_degrees * (2.0 * u[:, 1] - 1.0))
    flip = (u[:, 4] < 0.5) if aug.flips else np.zeros(m, bool)
    k90 = np.minimum((u[:, 5] * 4).astype(int), 3) if aug.rot90 else np.zeros(m, int)

    # A = diag(side) · R(θ + k·90°) · F  with F = diag(1, ±1) the flip of the output's columns.
    ang = theta + k90 * (np.pi / 2)
    cos, sin = np.cos(ang), np.sin(ang)
    fl = np.where(flip, -1.0, 1.0)
    A = np.empty((m, 2, 2))
    A[:, 0, 0] = side * cos
    A[:, 0, 1] = -side * sin * fl
    A[:, 1, 0] = side * sin
    A[:, 1, 1] = side * cos * fl

    # Centre: keep the rotated crop inside the image when possible.
    half = 0.5 * side * (np.abs(np.cos(theta)) + np.abs(np.sin(theta)))
    cy = np.where(half <= h / 2, half + u[:, 2] * np.maximum(h - 2 * half, 0.0), h / 2)
    cx = np.where(half <= w / 2, half + u[:, 3] * np.maximum(w - 2 * half, 0.0), w / 2)
    c = np.stack([cy, cx], axis=1)

    if aug.include_full:  # patch 0: the whole image, axis-aligned, stretched to the patch
        A[0] = np.array([[h, 0.0], [0.0, w]], dtype=float)
        c[0] = (h / 2, w / 2)
    return A, c


def _supersampling(A: np.ndarray, patch_size: int) -> int:
    extent = float(np.max(np.abs(A).sum(axis=2))) if A.size else 1.0  # input pixels spanned per axis
    return max(1, int(math.ceil(extent / patch_size - 1e-9)))


def _render(images: np.ndarray, A: np.ndarray, c: np.ndarray, patch_size: int) -> np.ndarray:
    """images (N, H, W, C) float32; A (N, m, 2, 2); c (N, m, 2) → (N, m, S, S, C) float32."""
    from scipy import ndimage

    n, h, w, ch = images.shape
    m = A.shape[1]
    S = patch_size
    # Strong downsampling: first average r × r blocks (exact geometry: pixel p of the reduced image
    # covers input [p·r, (p+1)·r)), so that at most ~2 bilinear samples per axis remain per output pixel.
    r = int(np.min(np.linalg.svd(A.reshape(-1, 2, 2), compute_uv=False)[:, -1]) // S) if A.size else 1
    if r >= 2:
        images = _block_mean(images, r)
        A, c = A / r, c / r
        n, h, w, ch = images.shape
    q = _supersampling(A.reshape(-1, 2, 2), S)
    Sq = S * q
    t = (np.arange(Sq) + 0.5) / Sq - 0.5  # normalised sample positions
    a, b = np.meshgrid(t, t, indexing="ij")  # (Sq, Sq)
    out = np.empty((n, m, S, S, ch), np.float32)
    per_image = m * Sq * Sq
    step = max(1, _CHUNK_POINTS // per_image)
    for s0 in range(0, n, step):
        s1 = min(n, s0 + step)
        Ac, cc = A[s0:s1], c[s0:s1]
        ys = Ac[:, :, 0, 0, None, None] * a + Ac[:, :, 0, 1, None, None] * b + cc[:, :, 0, None, None] - 0.5
        xs = Ac[:, :, 1, 0, None, None] * a + Ac[:, :, 1, 1, None, None] * b + cc[:, :, 1, None, None] - 0.5
        zs = np.broadcast_to(np.arange(s1 - s0, dtype=float)[:, None, None, None], ys.shape)
        coords = np.stack([zs, ys, xs])  # (3, n', m, Sq, Sq)
        for k in range(ch):
            vals = ndimage.map_coordinates(
                images[s0:s1, :, :, k], coords, order=1, mode="reflect", output=np.float32, prefilter=False
            )
            if q > 1:
                vals = vals.reshape(s1 - s0, m, S, q, S, q).mean(axis=(3, 5))
            out[s0:s1, :, :, :, k] = vals
    return out


def _block_mean(images: np.ndarray, r: int) -> np.ndarray:
    n, h, w, ch = images.shape
    ph, pw = -h % r, -w % r
    if ph or pw:
        images = np.pad(images, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="symmetric")
    h2, w2 = (h + ph) // r, (w + pw) // r
    return images.reshape(n, h2, r, w2, r, ch).mean(axis=(2, 4), dtype=np.float32)


def _finish(patches: np.ndarray, dtype) -> np.ndarray:
    if dtype == np.uint8:
        return np.clip(np.rint(patches), 0, 255).astype(np.uint8)
    return patches.astype(np.float32, copy=False)


def make_patch_bag(image, m: int, patch_size: int | None = None, seed=None, *,
                   augmentation: Augmentation | None = None, **options) -> np.ndarray:
    """Make the ``m`` augmented patches of one candidate image.

    Args:
        image: (H, W) or (H, W, C) array, uint8 or float.
        m: patches per candidate (≥ 1).
        patch_size: side S of the square patches; None → ``min(H, W)``.
        seed: int, None, ``numpy.random.SeedSequence`` or ``numpy.random.Generator``.
        augmentation: an :class:`Augmentation`; or pass its fields as keyword ``options``
            (``scale_range``, ``rotate_degrees``, ``flips``, ``rot90``, ``include_full``).

    Returns:
        (m, S, S, C) array; uint8 for uint8 input, float32 otherwise. Patch 0 is the plain resized
        full image when ``include_full`` (the default).

    Example:
    >>> bag = make_patch_bag(np.zeros((28, 28), np.uint8), m=8, seed=0)
    >>> bag.shape, bag.dtype
    ((8, 28, 28, 1), dtype('uint8'))
    """
    img = _as_hwc(image)
    h, w, _ = img.shape
    m, S = _check_m_size(m, patch_size, h, w)
    aug = augmentation if augmentation is not None else Augmentation(**options)
    A, c = _affine(_draw_params(_rng(seed), m), h, w, aug)
    out = _render(img[None].astype(np.float32), A[None], c[None], S)[0]
    return _finish(out, img.dtype)


def make_patch_bags(images, m: int, patch_size: int | None = None, seed=None, ids=None, *,
                    augmentation: Augmentation | None = None, **options) -> np.ndarray:
    """Vectorised :func:`make_patch_bag` for a batch of same-sized images.

    Args:
        images: (N, H, W) or (N, H, W, C) array, uint8 or float.
        m, patch_size, augmentation, options: as :func:`make_patch_bag`.
        seed: batch seed (int or None); image ``i`` uses ``child_seed(seed, ids[i])``.
        ids: N distinct-per-image integers naming the images (e.g. their candidate ids);
            default ``0 … N−1``. Results depend only on (seed, id), never on batching.

    Returns:
        (N, m, S, S, C) array; uint8 for uint8 input, float32 otherwise.
    """
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise AiftError(f"images must have shape (N, H, W) or (N, H, W, C); got shape {arr.shape}")
    n, h, w, _ = arr.shape
    m, S = _check_m_size(m, patch_size, h, w)
    aug = augmentation if augmentation is not None else Augmentation(**options)
    if ids is None:
        ids = np.arange(n)
    ids = np.asarray(ids)
    if ids.shape != (n,):
        raise AiftError(f"ids must have one entry per image ({n}); got shape {ids.shape}")
    if isinstance(seed, np.random.SeedSequence):
        base = seed
    else:
        base = np.random.SeedSequence(seed) if seed is not None else np.random.SeedSequence()
    A = np.empty((n, m, 2, 2))
    c = np.empty((n, m, 2))
    for i in range(n):
        A[i], c[i] = _affine(_draw_params(_rng(child_seed(base, int(ids[i]))), m), h, w, aug)
    if n == 0:
        return np.empty((0, m, S, S, arr.shape[3]), np.uint8 if arr.dtype == np.uint8 else np.float32)
    out = _render(arr.astype(np.float32, copy=False), A, c, S)
    return _finish(out, arr.dtype)
