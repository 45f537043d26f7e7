"""Shared rendering of a colonoscopy video: a textured mucosal surface seen through a moving scope.

Used by :mod:`simulate.apps.colonoscopy_frames` and :mod:`simulate.apps.polyp_detection`.

Generative model (all numpy/scipy, vectorised over frames where it matters):

* **Scene** (:func:`make_scene`): one large surface per video, described by an RGB *albedo* and a
  *height* map. Height holds haustral folds (curved ridges with a crease beside them), slow
  undulations and fine bumpy texture; albedo holds a per-video pinkish-red palette with
  low-frequency colour variation, fine texture noise and branching vessels (thin darker-red lines
  grown as branching random walks).
* **Camera** (:func:`camera_path`): a viewport that drifts, rotates and zooms smoothly over the
  scene (sums of a few low-frequency sinusoids), so consecutive frames are near-duplicates, as in
  real video. The dark lumen and the light gain drift smoothly too.
* **Rendering** (:func:`render_frames`): albedo and height gradient are resampled through the
  viewport (bilinear), the gradient is rotated into frame coordinates, and the surface is shaded by
  the scope light (co-located with the camera, slightly tilted): Lambert diffuse + a specular lobe
  (wet mucosa sparkles on ridges), crease darkening, radial vignetting and a dark lumen region.
* **Degradations** (:func:`degrade`): ``blur`` (out of focus), ``motion`` (directional blur),
  ``bubbles`` (bright circular rims), ``contact`` (wall contact: washed-out red-orange, near
  uniform), ``glare`` (saturated white specular blobs); each with a severity in [0, 1].
  :func:`episodes` lays them out as temporal runs of consecutive frames with a smoothly varying
  severity inside a run.
* **Patches** (:func:`crop_patches`): bilinear crops at arbitrary centre / size / dihedral transform.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

DEGRADATIONS = ("blur", "motion", "bubbles", "contact", "glare")
DIHEDRAL = ("id", "rot90", "rot180", "rot270", "flip", "flip-rot90", "flip-rot180", "flip-rot270")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def bilinear(img, t, y, x):
    """Sample ``img`` (T, H, W, C) at frame ``t`` and real coordinates ``y``, ``x`` (same shape).

    Coordinates are clamped to the image (edge replication). Returns ``shape + (C,)`` float32.
    """
    T, H, W, C = img.shape
    y = np.clip(np.asarray(y, np.float32), 0.0, H - 1.001)
    x = np.clip(np.asarray(x, np.float32), 0.0, W - 1.001)
    yf = np.floor(y)
    xf = np.floor(x)
    fy = (y - yf)[..., None]
    fx = (x - xf)[..., None]
    base = (np.asarray(t, dtype=np.intp) * H + yf.astype(np.intp)) * W + xf.astype(np.intp)
    flat = img.reshape(-1, C)
    a = np.take(flat, base, axis=0)
    b = np.take(flat, base + 1, axis=0)
    top = a + (b - a) * fx
    a = np.take(flat, base + W, axis=0)
    b = np.take(flat, base + W + 1, axis=0)
    bot = a + (b - a) * fx
    return top + (bot - top) * fy


def smooth_noise(rng, shape, sigma):
    """Gaussian-filtered white noise rescaled to unit standard deviation."""
    n = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
    return n / (n.std() + 1e-8)


def smooth_series(rng, n, amp, cycles=(0.4, 1.6), k=3):
    """Sum of ``k`` random sinusoids over ``n`` steps (frequencies in cycles per series)."""
    t = np.arange(n, dtype=np.float64) / max(n, 1)
    out = np.zeros(n)
    for _ in range(k):
        f = rng.uniform(*cycles)
        out += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    m = np.abs(out).max()
    return amp * out / (m + 1e-12)


# --------------------------------------------------------------------------------------------
# scene
# --------------------------------------------------------------------------------------------

def _vessels(rng, size, density):
    """Map in [0, 1] of thin branching vessels grown as random walks."""
    n_roots = max(1, int(round(density * (size / 128.0) ** 2)))
    pts_y, pts_x, wts = [], [], []
    walkers = []
    for _ in range(n_roots):
        walkers.append((rng.uniform(0, size), rng.uniform(0, size), rng.uniform(0, 2 * np.pi),
                        int(rng.integers(size // 3, size)), 1.0))
    gen = 0
    while walkers and gen < 3:
        children = []
        for y, x, a, L, w in walkers:
            turn = ndi.gaussian_filter1d(rng.standard_normal(L), 4.0) * 0.25
            ang = a + np.cumsum(turn)
            ys = y + np.cumsum(np.sin(ang))
            xs = x + np.cumsum(np.cos(ang))
            pts_y.append(ys)
            pts_x.append(xs)
            wts.append(np.full(L, w))
            for _ in range(rng.poisson(2.0)):
                i = int(rng.integers(0, L))
                children.append((ys[i], xs[i], ang[i] + rng.choice([-1, 1]) * rng.uniform(0.5, 1.2),
                                 max(8, int(L * rng.uniform(0.3, 0.6))), w * 0.65))
        walkers = children
        gen += 1
    ys = np.concatenate(pts_y) % size
    xs = np.concatenate(pts_x) % size
    w = np.concatenate(wts)
    img = np.zeros((size, size), np.float32)
    np.add.at(img, (ys.astype(np.intp) % size, xs.astype(np.intp) % size), w)
    img = ndi.gaussian_filter(img, 0.7, mode="wrap")
    return 1.0 - np.exp(-2.5 * img)


def make_scene(rng, size, *, n_folds=None, vessel_density=2.5, fold_width=None):
    """Render a mucosal surface: returns dict ``albedo`` (S, S, 3), ``height`` (S, S), ``palette``.

    ``size`` is in scene pixels; frames typically view 48–96 scene pixels at once.
    """
    S = int(size)
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    # --- height: folds + undulation + fine bumps -------------------------------------------
    h = 1.5 * smooth_noise(rng, (S, S), S / 10.0)
    if n_folds is None:
        n_folds = int(rng.integers(3, 6)) * max(1, S // 192)
    fw = fold_width if fold_width is not None else S / 36.0
    for _ in range(n_folds):
        th = rng.uniform(0, np.pi)
        u = xx * np.cos(th) + yy * np.sin(th)
        v = -xx * np.sin(th) + yy * np.cos(th)
        v0 = rng.uniform(v.min(), v.max())
        d = v - v0 - rng.uniform(0.05, 0.2) * S * np.sin(2 * np.pi * u / (S * rng.uniform(0.5, 1.5))
                                                       + rng.uniform(0, 2 * np.pi))
        w = fw * rng.uniform(0.8, 1.8)
        H = rng.uniform(3.0, 6.0)
        h += H * np.exp(-0.5 * (d / w) ** 2) - 0.6 * H * np.exp(-0.5 * ((d + 1.6 * w) / (0.7 * w)) ** 2)
    h += 0.12 * smooth_noise(rng, (S, S), 1.5)
    # --- albedo: palette, colour variation, texture, vessels ---------------------------------
    base = np.array([rng.uniform(0.78, 0.92), rng.uniform(0.36, 0.50), rng.uniform(0.30, 0.42)], np.float32)
    var = smooth_noise(rng, (S, S), S / 12.0)[..., None] * np.array([0.04, 0.05, 0.04], np.float32)
    tex = smooth_noise(rng, (S, S), 0.8)[..., None] * np.array([0.025, 0.03, 0.03], np.float32)
    alb = base + var + tex
    v = _vessels(rng, S, vessel_density * rng.uniform(0.6, 1.4))[..., None]
    alb = alb * (1.0 - v * np.array([0.35, 0.65, 0.55], np.float32))
    return {"albedo": np.clip(alb, 0.02, 1.0).astype(np.float32), "height": h.astype(np.float32),
            "palette": base.tolist()}


def add_bump(scene, rng, cy, cx, radius, *, height=4.0, color=None, texture=0.0, irregular=0.15,
             mask_value=None):
    """Add a protruding rounded blob (polyp or benign bump) to ``scene`` in place.

    ``color`` is a multiplicative RGB tint of the albedo inside the blob; ``texture`` the amplitude
    of a fine pit pattern; ``irregular`` the relative boundary irregularity. If ``mask_value`` is
    given, ``scene["mask"]`` (created if absent) is set to it inside the blob.
    """
    S = scene["height"].shape[0]
    r = int(np.ceil(radius * (1 + 2 * irregular))) + 3
    y0, y1 = max(0, int(cy) - r), min(S, int(cy) + r + 1)
    x0, x1 = max(0, int(cx) - r), min(S, int(cx) + r + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    ang = np.arctan2(dy, dx)
    el = rng.uniform(0.75, 1.0)
    rot = rng.uniform(0, np.pi)
    du = dx * np.cos(rot) + dy * np.sin(rot)
    dv = (-dx * np.sin(rot) + dy * np.cos(rot)) / el
    R = radius * (1 + sum(irregular * rng.uniform(0.2, 1.0) / k * np.cos(k * ang + rng.uniform(0, 6.3))
                          for k in (2, 3, 5)))
    rho = np.sqrt(du ** 2 + dv ** 2) / R
    inside = np.clip(1 - rho ** 2, 0, None)
    prof = height * inside ** 1.2
    scene["height"][y0:y1, x0:x1] += prof.astype(np.float32)
    wgt = np.clip((1.15 - rho) / 0.3, 0, 1)[..., None]
    if color is not None:
        tint = np.asarray(color, np.float32)
        pit = 1 + texture * smooth_noise(rng, yy.shape, 0.9)[..., None]
        a = scene["albedo"][y0:y1, x0:x1]
        scene["albedo"][y0:y1, x0:x1] = np.clip(a * (1 - wgt) + a * tint * pit * wgt, 0.02, 1.0)
    if mask_value is not None:
        if "mask" not in scene:
            scene["mask"] = np.zeros_like(scene["height"])
        scene["mask"][y0:y1, x0:x1] = np.where(rho < 1.0, mask_value, scene["mask"][y0:y1, x0:x1])


# --------------------------------------------------------------------------------------------
# camera and rendering
# --------------------------------------------------------------------------------------------

def camera_path(rng, n_frames, scene_size, frame_size, *, speed=1.0, zoom=(0.85, 1.25)):
    """Smooth viewport trajectory: arrays ``cy, cx`` (scene px), ``angle`` (rad), ``scale``
    (scene px per frame px), plus the lumen centre ``ly, lx`` (frame px from centre) and light
    ``gain``. ``speed`` scales the number of oscillations over the video."""
    n = int(n_frames)
    scale = np.exp(np.log(zoom[0]) + (np.log(zoom[1]) - np.log(zoom[0])) * (0.5 + 0.5 * smooth_series(rng, n, 1.0)))
    half = 0.75 * frame_size * zoom[1]
    lo, hi = half, scene_size - half
    cyc = (0.3 * speed, 1.2 * speed)
    cy = (lo + hi) / 2 + smooth_series(rng, n, (hi - lo) / 2, cycles=cyc)
    cx = (lo + hi) / 2 + smooth_series(rng, n, (hi - lo) / 2, cycles=cyc)
    angle = rng.uniform(0, 2 * np.pi) + smooth_series(rng, n, rng.uniform(0.3, 1.0), cycles=cyc)
    ly = smooth_series(rng, n, 0.45 * frame_size, cycles=cyc)
    lx = smooth_series(rng, n, 0.45 * frame_size, cycles=cyc)
    gain = 1.0 + smooth_series(rng, n, 0.12, cycles=cyc)
    return {"cy": cy, "cx": cx, "angle": angle, "scale": scale, "ly": ly, "lx": lx, "gain": gain}


def frame_to_scene(path, frame_size, t, fy, fx):
    """Map frame coordinates (fy, fx) of frames ``t`` to scene coordinates (y, x)."""
    c = frame_size / 2.0 - 0.5
    u, v = fx - c, fy - c
    a, s = path["angle"][t], path["scale"][t]
    x = path["cx"][t] + s * (np.cos(a) * u - np.sin(a) * v)
    y = path["cy"][t] + s * (np.sin(a) * u + np.cos(a) * v)
    return y, x


def scene_to_frame(path, frame_size, t, y, x):
    """Inverse of :func:`frame_to_scene`."""
    c = frame_size / 2.0 - 0.5
    a, s = path["angle"][t], path["scale"][t]
    dx, dy = (x - path["cx"][t]) / s, (y - path["cy"][t]) / s
    u = np.cos(a) * dx + np.sin(a) * dy
    v = -np.sin(a) * dx + np.cos(a) * dy
    return v + c, u + c


def render_frames(scene, path, frame_size, rng, *, specular=0.35, noise=0.012, chunk=64):
    """Render every frame of ``path``; returns ``frames`` (T, F, F, 3) float32 in [0, 1] and, if
    the scene has a ``mask``, ``mask`` (T, F, F) float32."""
    F = int(frame_size)
    T = len(path["cy"])
    h = scene["height"]
    gy, gx = np.gradient(h)
    chans = [scene["albedo"], gy[..., None], gx[..., None], ndi.gaussian_filter(h, 4.0)[..., None] - h[..., None]]
    has_mask = "mask" in scene
    if has_mask:
        chans.append(scene["mask"][..., None])
    stack = np.concatenate(chans, axis=-1).astype(np.float32)[None]
    fy, fx = np.mgrid[0:F, 0:F].astype(np.float32)
    c = F / 2.0 - 0.5
    rr = ((fy - c) ** 2 + (fx - c) ** 2) / (F / 2.0) ** 2
    vign = (1.2 / (1.0 + 0.45 * rr)).astype(np.float32)
    # scope light: tilted a little, fixed in frame coordinates
    L = np.array([0.25, -0.2, 1.0])
    L = L / np.linalg.norm(L)
    Hh = L + np.array([0.0, 0.0, 1.0])
    Hh = Hh / np.linalg.norm(Hh)
    frames = np.empty((T, F, F, 3), np.float32)
    mask = np.empty((T, F, F), np.float32) if has_mask else None
    for s0 in range(0, T, chunk):
        t = np.arange(s0, min(T, s0 + chunk))
        tt = t[:, None, None]
        y, x = frame_to_scene(path, F, tt, fy[None], fx[None])
        smp = bilinear(stack, np.zeros_like(y, dtype=np.intp), y, x)
        alb, sgy, sgx, cav = smp[..., :3], smp[..., 3], smp[..., 4], smp[..., 5]
        a = path["angle"][tt]
        s = path["scale"][tt]
        # gradient in frame coordinates (per frame pixel), then a mild depth exaggeration
        du = s * (sgx * np.cos(a) + sgy * np.sin(a))
        dv = s * (-sgx * np.sin(a) + sgy * np.cos(a))
        nz = 1.0 / np.sqrt(1 + du ** 2 + dv ** 2)
        nx, ny = -du * nz, -dv * nz
        diff = np.clip(nx * L[0] + ny * L[1] + nz * L[2], 0, None)
        spec = np.clip(nx * Hh[0] + ny * Hh[1] + nz * Hh[2], 0, None) ** 60
        crease = np.exp(-np.clip(cav, 0, None) * 0.25)
        lum = np.sqrt((fy[None] - c - path["ly"][tt]) ** 2 + (fx[None] - c - path["lx"][tt]) ** 2) / F
        lumen = 1.0 - 0.92 * np.exp(-0.5 * (lum / 0.15) ** 2)
        illum = (path["gain"][tt] * vign[None] * lumen).astype(np.float32)
        shade = (0.25 + 0.85 * diff) * crease
        img = alb * (shade * illum)[..., None] + (specular * spec * illum)[..., None]
        img = img + noise * rng.standard_normal(img.shape).astype(np.float32)
        frames[t] = np.clip(ndi.gaussian_filter(img, (0, 0.5, 0.5, 0)), 0, 1)
        if has_mask:
            mask[t] = smp[..., 6]
    out = {"frames": frames}
    if has_mask:
        out["mask"] = mask
    return out


# --------------------------------------------------------------------------------------------
# degradations
# --------------------------------------------------------------------------------------------

def episodes(rng, n_frames, p_bad, *, mean_bad=20.0, kinds=DEGRADATIONS, kind_p=None,
             sev_bad=(0.3, 1.0), sev_clean=(0.0, 0.3), p_nuisance=0.6):
    """Lay out temporal runs of degraded ("bad") and clean frames.

    Returns ``bad`` (T,) bool, ``kind`` (T,) int (index into ``kinds``; -1 = none) and ``severity``
    (T,) float. Bad runs have mean length ``mean_bad`` and cover about a fraction ``p_bad`` of the
    frames; inside a run the severity drifts smoothly in ``sev_bad``. Clean runs carry, with
    probability ``p_nuisance``, a mild nuisance degradation with severity in ``sev_clean``.
    """
    T = int(n_frames)
    mean_clean = mean_bad * (1 - p_bad) / max(p_bad, 1e-6)
    bad = np.zeros(T, bool)
    kind = np.full(T, -1, np.int64)
    sev = np.zeros(T)
    t = 0
    state = rng.random() < p_bad
    while t < T:
        mean = mean_bad if state else mean_clean
        L = max(2, int(round(rng.gamma(3.0, mean / 3.0))))
        e = min(T, t + L)
        n = e - t
        drift = 0.5 + 0.5 * smooth_series(rng, n, 1.0, cycles=(0.2, 0.8), k=2)
        if state:
            k = int(rng.choice(len(kinds), p=kind_p))
            lo, hi = sev_bad
            a, b = np.sort(rng.uniform(lo, hi, 2))
            bad[t:e] = True
            kind[t:e] = k
            sev[t:e] = a + (b - a) * drift
        elif rng.random() < p_nuisance:
            k = int(rng.choice(len(kinds), p=kind_p))
            lo, hi = sev_clean
            a, b = np.sort(rng.uniform(lo, hi, 2))
            kind[t:e] = k
            sev[t:e] = a + (b - a) * drift
        t = e
        state = not state
    return {"bad": bad, "kind": kind, "severity": sev}


def _motion_kernel(length, angle):
    L = max(1.0, float(length))
    r = int(np.ceil(L / 2)) + 1
    k = np.zeros((2 * r + 1, 2 * r + 1), np.float32)
    ts = np.linspace(-L / 2, L / 2, int(4 * L) + 2)
    ys = np.round(r + ts * np.sin(angle)).astype(int)
    xs = np.round(r + ts * np.cos(angle)).astype(int)
    np.add.at(k, (ys, xs), 1.0)
    k = ndi.gaussian_filter(k, 0.4)
    return k / k.sum()


def _blobs(F, rng, n, rmin, rmax):
    yy, xx = np.mgrid[0:F, 0:F].astype(np.float32)
    cy = rng.uniform(0, F, n)[:, None, None]
    cx = rng.uniform(0, F, n)[:, None, None]
    r = rng.uniform(rmin, rmax, n)[:, None, None]
    d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    return d, r, cy, cx


def degrade_one(img, kind, s, rng):
    """Apply degradation ``kind`` (name) with severity ``s`` in [0, 1] to one frame (F, F, 3)."""
    F = img.shape[0]
    u = F / 64.0
    if s <= 0 or kind is None:
        return img
    if kind == "blur":
        return ndi.gaussian_filter(img, (3.5 * s * u, 3.5 * s * u, 0))
    if kind == "motion":
        k = _motion_kernel(16 * s * u, rng.uniform(0, np.pi))
        return np.stack([ndi.convolve(img[..., c], k, mode="nearest") for c in range(3)], -1)
    if kind == "bubbles":
        # a cluster of bubbles: bright thin rims, a lighter interior, a small specular dot
        n = int(round(2 + 26 * s))
        yy, xx = np.mgrid[0:F, 0:F].astype(np.float32)
        cyc, cxc = rng.uniform(0.15 * F, 0.85 * F, 2)
        spread = (0.12 + 0.3 * s) * F
        cy = (cyc + spread * rng.standard_normal(n))[:, None, None]
        cx = (cxc + spread * rng.standard_normal(n))[:, None, None]
        r = rng.uniform(1.5 * u, (2.5 + 6 * s) * u, n)[:, None, None]
        d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        rim = np.exp(-0.5 * ((d - r) / (0.45 * u + 0.06 * r)) ** 2).max(0)
        inside = (d < r).any(0).astype(np.float32)
        dd = np.sqrt((yy - cy + 0.45 * r) ** 2 + (xx - cx + 0.45 * r) ** 2)
        dot = np.exp(-0.5 * (dd / (0.12 * r + 0.3 * u)) ** 2).max(0)
        a = 0.55 + 0.45 * s
        out = (img * (1 - 0.15 * a * inside[..., None])
               + a * rim[..., None] * np.array([0.95, 0.95, 0.9], np.float32) + a * dot[..., None])
        return np.clip(out, 0, 1)
    if kind == "contact":
        col = np.array([0.97, 0.58, 0.36], np.float32) * rng.uniform(0.9, 1.05)
        low = 1 + 0.06 * smooth_noise(rng, (F, F), F / 6.0)[..., None]
        a = np.clip(0.15 + 0.85 * s, 0, 1)
        under = ndi.gaussian_filter(img, (4 * s * u, 4 * s * u, 0))
        return np.clip((1 - a) * under + a * col * low, 0, 1)
    if kind == "glare":
        n = int(round(1 + 4 * s))
        d, r, _, _ = _blobs(F, rng, n, (1.5 + 4 * s) * u, (3 + 10 * s) * u)
        blob = np.exp(-0.5 * (np.clip(d - r, 0, None) / (0.8 * u)) ** 2).max(0)
        return np.clip(img + 1.2 * blob[..., None], 0, 1)
    raise ValueError(f"unknown degradation {kind!r}")


def degrade(frames, kind, severity, rng, kinds=DEGRADATIONS):
    """Apply the per-frame degradations of :func:`episodes` to ``frames`` (T, F, F, 3), in place."""
    for t in np.nonzero(kind >= 0)[0]:
        frames[t] = degrade_one(frames[t], kinds[kind[t]], float(severity[t]), rng)
    return frames


# --------------------------------------------------------------------------------------------
# patches
# --------------------------------------------------------------------------------------------

def crop_patches(frames, t, cy, cx, side, dihedral, out_size):
    """Bilinear crops of ``frames`` (T, F, F, C): one per entry of ``t``/``cy``/``cx``/``side``/
    ``dihedral`` (centres in pixel-index coordinates) (arrays of equal shape ``s``), resampled to ``out_size`` and transformed by the
    dihedral index (0–7, see :data:`DIHEDRAL`). Returns ``s + (P, P, C)`` float32."""
    P = int(out_size)
    g = (np.arange(P, dtype=np.float32) + 0.5) / P - 0.5
    gv, gu = np.meshgrid(g, g, indexing="ij")
    t = np.asarray(t)
    shp = t.shape
    d = np.asarray(dihedral).reshape(-1)
    k = d % 4
    flip = d >= 4
    u = np.where(flip[:, None, None], -gu[None], gu[None])
    v = np.broadcast_to(gv[None], u.shape)
    # rotate (u, v) by k * 90 degrees
    cos = np.array([1, 0, -1, 0], np.float32)[k][:, None, None]
    sin = np.array([0, 1, 0, -1], np.float32)[k][:, None, None]
    ur = cos * u - sin * v
    vr = sin * u + cos * v
    sd = np.asarray(side, np.float32).reshape(-1)[:, None, None]
    y = np.asarray(cy, np.float32).reshape(-1)[:, None, None] + vr * sd
    x = np.asarray(cx, np.float32).reshape(-1)[:, None, None] + ur * sd
    tt = np.broadcast_to(t.reshape(-1)[:, None, None], y.shape)
    out = bilinear(frames, tt, y, x)
    return out.reshape(shp + (P, P, frames.shape[-1]))


def to_uint8(x):
    return np.clip(np.round(np.asarray(x) * 255.0), 0, 255).astype(np.uint8)
