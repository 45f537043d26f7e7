"""Procedural natural-image proxy tasks for offline source pre-training (numpy only).

Without internet ImageNet weights cannot be downloaded, so M0 is pre-trained on a many-class
*proxy* task rendered procedurally: every image shows one foreground object whose class is the pair
(shape, texture) -- e.g. ``"star/checker"`` -- drawn over a random background (flat colour, gradient,
low-frequency colour field, faint grating or clutter), with random colours, pose, scale, aspect,
occluders, distractor blobs/lines, blur, noise, contrast/gamma jitter and occasional grayscale.

Two tasks are defined on disjoint primitives:

- ``"source"``: :data:`SOURCE_SHAPES` x :data:`SOURCE_TEXTURES` = 8 x 5 = 40 classes, used to
  pre-train M0;
- ``"probe"``: :data:`PROBE_SHAPES` x :data:`PROBE_TEXTURES` = 4 x 3 = 12 classes of shapes and
  textures never seen in pre-training, used to measure how well the learned features transfer
  (linear probe).

Geometry is expressed in normalised image coordinates, so the same scene is drawn at any
resolution (32x32 for ``small_cnn``, 224x224 for the ImageNet-sized backbones). Images are rendered
at 2x and area-averaged (anti-aliased edges).

Determinism: image ``i`` of ``generate(n, task, shape, seed)`` depends only on ``(seed, task, i)``,
so a longer run extends a shorter one (prefix-stable) and reruns repeat bit for bit. Labels are
``i % num_classes`` (balanced); shuffle for training.
"""

from __future__ import annotations

import math

import numpy as np

from aift_tf.errors import AiftError

SOURCE_SHAPES = ("disk", "square", "triangle", "ring", "cross", "star", "bar", "crescent")
SOURCE_TEXTURES = ("solid", "stripes", "checker", "dots", "speckle")
PROBE_SHAPES = ("chevron", "frame", "half-disk", "ell")
PROBE_TEXTURES = ("concentric", "grid", "wavy")

TASKS = {
    "source": (SOURCE_SHAPES, SOURCE_TEXTURES),
    "probe": (PROBE_SHAPES, PROBE_TEXTURES),
}
_TASK_CODE = {"source": 1, "probe": 2}
_SS = 2  # supersampling factor
_LUMA = np.array([0.299, 0.587, 0.114])


def class_names(task: str = "source") -> list[str]:
    """Class names ``"shape/texture"`` of ``task``; class = shape_index * n_textures + texture_index."""
    shapes, textures = _task(task)
    return [f"{s}/{t}" for s in shapes for t in textures]


def num_classes(task: str = "source") -> int:
    shapes, textures = _task(task)
    return len(shapes) * len(textures)


def _task(task):
    if task not in TASKS:
        raise AiftError(f"unknown proxy task {task!r}; valid tasks: {', '.join(TASKS)}")
    return TASKS[task]


def _check_shape(image_shape):
    try:
        h, w, c = (int(v) for v in image_shape)
    except (TypeError, ValueError):
        raise AiftError(f"image shape {image_shape!r} must be (height, width, channels)") from None
    if h < 8 or w < 8 or c not in (1, 3):
        raise AiftError(f"image shape {tuple(image_shape)!r}: need height, width >= 8 and 1 or 3 channels")
    return h, w, c


# ----------------------------------------------------------------------------------------------
# shapes: boolean masks in the object's local frame (u, v), unit size ~ 1


def _shape_mask(name, u, v):
    rho = np.hypot(u, v)
    if name == "disk":
        return rho <= 1.0
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if name == "triangle":
        m = np.ones_like(u, dtype=bool)
        for ang in (-90.0, 30.0, 150.0):
            a = math.radians(ang)
            m &= u * math.cos(a) + v * math.sin(a) <= 0.5
        return m
    if name == "ring":
        return (rho <= 1.0) & (rho >= 0.55)
    if name == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 1.0))
    if name == "star":
        phi = np.arctan2(v, u)
        t = (phi * 5.0 / (2 * math.pi)) % 1.0
        return rho <= 0.42 + 0.58 * np.abs(2.0 * t - 1.0)
    if name == "bar":
        return u * u + (v / 0.32) ** 2 <= 1.0
    if name == "crescent":
        return (rho <= 1.0) & ((u - 0.45) ** 2 + v * v > 0.8**2)
    # probe shapes
    if name == "chevron":
        return (np.abs(v + 0.35 - 0.95 * np.abs(u)) <= 0.27) & (np.abs(u) <= 0.95)
    if name == "frame":
        m = np.maximum(np.abs(u), np.abs(v))
        return (m <= 0.85) & (m >= 0.52)
    if name == "half-disk":
        return (rho <= 1.0) & (v >= -0.15)
    if name == "ell":
        return ((u >= -0.75) & (u <= -0.25) & (np.abs(v) <= 0.9)) | (
            (v >= 0.4) & (v <= 0.9) & (u >= -0.75) & (u <= 0.75)
        )
    raise AssertionError(name)


# ----------------------------------------------------------------------------------------------
# textures: pattern p in [0, 1] mixing two colours; coordinates in normalised image units


def _sharpen(s, k):
    """Map s in [-1, 1] to [0, 1]; k = 1 sine-like, large k square-wave."""
    return 0.5 + 0.5 * np.tanh(k * s) / math.tanh(k)


def _texture(name, rng, x, y, cx, cy, out_hw):
    period = rng.uniform(0.22, 0.4)  # 3.5-6.5 px at 32x32
    ang = rng.uniform(0, math.pi)
    a = x * math.cos(ang) + y * math.sin(ang)
    b = -x * math.sin(ang) + y * math.cos(ang)
    ph1, ph2 = rng.uniform(0, 2 * math.pi, size=2)
    k = rng.uniform(1.0, 6.0)
    w = 2 * math.pi / period
    if name == "solid":
        # no pattern, weak shading only: an additive offset in [-0.15, 0.15]
        g = rng.uniform(-0.15, 0.15)
        return np.clip(g * a, -0.15, 0.15)
    if name == "stripes":
        return _sharpen(np.sin(w * a + ph1), k)
    if name == "checker":
        return _sharpen(np.sin(w * a + ph1) * np.sin(w * b + ph2), k)
    if name == "dots":
        p = period * rng.uniform(1.1, 1.4)
        da = (a / p + ph1 / (2 * math.pi)) % 1.0 - 0.5
        db = (b / p + ph2 / (2 * math.pi)) % 1.0 - 0.5
        r = rng.uniform(0.22, 0.32)
        return (np.hypot(da, db) <= r).astype(np.float64)
    if name == "speckle":
        h, wd = out_hw
        cell = int(rng.integers(1, 3))  # 1 or 2 output pixels per speckle
        n = rng.random(((h + cell - 1) // cell, (wd + cell - 1) // cell))
        n = np.repeat(np.repeat(n, cell * _SS, axis=0), cell * _SS, axis=1)[: h * _SS, : wd * _SS]
        return (n > rng.uniform(0.35, 0.65)).astype(np.float64) if rng.random() < 0.5 else n
    # probe textures
    if name == "concentric":
        rho = np.hypot(x - cx, y - cy)
        return _sharpen(np.sin(w * rho + ph1), k)
    if name == "grid":
        lw = rng.uniform(0.18, 0.3)
        la = np.abs(((a / period + ph1) % 1.0) - 0.5) >= 0.5 - lw / 2
        lb = np.abs(((b / period + ph2) % 1.0) - 0.5) >= 0.5 - lw / 2
        return (la | lb).astype(np.float64)
    if name == "wavy":
        amp = period * rng.uniform(0.35, 0.7)
        q = period * rng.uniform(2.0, 3.5)
        return _sharpen(np.sin(w * (a + amp * np.sin(2 * math.pi * b / q + ph2)) + ph1), k)
    raise AssertionError(name)


# ----------------------------------------------------------------------------------------------
# colours, backgrounds, clutter


def _colour(rng):
    return rng.random(3)


def _colour_pair(rng, min_luma=0.22):
    """Two colours whose luminances differ (the texture survives grayscale)."""
    for _ in range(50):
        c1, c2 = rng.random(3), rng.random(3)
        if abs(c1 @ _LUMA - c2 @ _LUMA) >= min_luma:
            return c1, c2
    return np.array([0.1, 0.1, 0.1]), np.array([0.9, 0.9, 0.9])


def _background(rng, x, y):
    kind = rng.choice(5, p=[0.15, 0.25, 0.3, 0.15, 0.15])
    base = _colour(rng)
    img = np.broadcast_to(base, x.shape + (3,)).copy()
    if kind == 1:  # linear gradient
        g = rng.normal(0, 0.25, size=(2, 3))
        img += x[..., None] * g[0] + y[..., None] * g[1]
    elif kind == 2:  # low-frequency colour field (sum of random waves)
        for _ in range(int(rng.integers(2, 5))):
            f = rng.uniform(0.5, 2.5)
            a = rng.uniform(0, 2 * math.pi)
            s = np.sin(f * math.pi * (x * math.cos(a) + y * math.sin(a)) + rng.uniform(0, 2 * math.pi))
            img += s[..., None] * rng.normal(0, 0.15, size=3)
    elif kind == 3:  # faint grating
        f = rng.uniform(0.15, 0.5)
        a = rng.uniform(0, math.pi)
        s = np.sin(2 * math.pi / f * (x * math.cos(a) + y * math.sin(a)))
        img += s[..., None] * rng.uniform(0.04, 0.12) * rng.choice([-1, 1], size=3)
    elif kind == 4:  # blotchy: a few large soft blobs
        for _ in range(int(rng.integers(2, 5))):
            c = rng.uniform(-1, 1, size=2)
            r = rng.uniform(0.3, 0.9)
            m = np.exp(-((x - c[0]) ** 2 + (y - c[1]) ** 2) / (2 * r * r))
            img += m[..., None] * (rng.random(3) - base) * 0.6
    return np.clip(img, 0, 1)


def _blob(rng, x, y, size_lo, size_hi):
    """A random small distractor: ellipse or line segment; returns a boolean mask."""
    c = rng.uniform(-1.0, 1.0, size=2)
    ang = rng.uniform(0, math.pi)
    u = (x - c[0]) * math.cos(ang) + (y - c[1]) * math.sin(ang)
    v = -(x - c[0]) * math.sin(ang) + (y - c[1]) * math.cos(ang)
    r = rng.uniform(size_lo, size_hi)
    if rng.random() < 0.35:  # line / scratch
        return (np.abs(u) <= r * 2.5) & (np.abs(v) <= rng.uniform(0.025, 0.06))
    e = rng.uniform(0.5, 1.0)
    return (u / r) ** 2 + (v / (r * e)) ** 2 <= 1.0


def _render(rng, shape_name, texture_name, h, w, c):
    H, W = h * _SS, w * _SS
    ys = (np.arange(H) + 0.5) / H * 2 - 1
    xs = (np.arange(W) + 0.5) / W * 2 - 1
    y, x = np.meshgrid(ys * (h / max(h, w)), xs * (w / max(h, w)), indexing="ij")

    img = _background(rng, x, y)

    # clutter behind the object
    for _ in range(int(rng.integers(0, 4))):
        m = _blob(rng, x, y, 0.06, 0.2)
        img[m] = _colour(rng)

    # the object
    cx, cy = rng.uniform(-0.3, 0.3, size=2)
    r = rng.uniform(0.5, 0.8)
    asp = math.exp(rng.uniform(-0.2, 0.2))
    th = rng.uniform(0, 2 * math.pi)
    u = ((x - cx) * math.cos(th) + (y - cy) * math.sin(th)) / (r * asp)
    v = (-(x - cx) * math.sin(th) + (y - cy) * math.cos(th)) / (r / asp)
    if rng.random() < 0.5:
        u = -u  # mirror
    mask = _shape_mask(shape_name, u, v)

    bg_mean = img.reshape(-1, 3).mean(0)
    for _ in range(50):  # object colours distinct from the background
        c1, c2 = _colour_pair(rng)
        mid = 0.5 * (c1 + c2) if texture_name != "solid" else c1
        if np.linalg.norm(mid - bg_mean) >= 0.3 and abs((mid - bg_mean) @ _LUMA) >= 0.08:
            break
    p = _texture(texture_name, rng, x, y, cx, cy, (h, w))
    if texture_name == "solid":
        fill = np.clip(c1 + p[..., None], 0, 1)
    else:
        fill = c1 * (1 - p[..., None]) + c2 * p[..., None]
    img[mask] = fill[mask]
    if rng.random() < 0.25:  # outline
        edge = mask & ~(
            np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1)
        )
        img[edge] = _colour(rng)

    # occluders and clutter in front
    if rng.random() < 0.25:
        oc = np.array([cx, cy]) + rng.normal(0, 0.5 * r, size=2)
        ro = rng.uniform(0.12, 0.25)
        if rng.random() < 0.5:
            m = (np.abs(x - oc[0]) <= ro) & (np.abs(y - oc[1]) <= ro * rng.uniform(0.5, 1.5))
        else:
            m = (x - oc[0]) ** 2 + (y - oc[1]) ** 2 <= ro * ro
        img[m] = _colour(rng) if rng.random() < 0.5 else bg_mean
    for _ in range(int(rng.integers(0, 2))):
        m = _blob(rng, x, y, 0.04, 0.1)
        img[m] = _colour(rng)

    # downsample (area average) to the output resolution
    img = img.reshape(h, _SS, w, _SS, 3).mean(axis=(1, 3))

    # photometric jitter, blur, noise
    if rng.random() < 0.2:
        from scipy.ndimage import gaussian_filter

        img = gaussian_filter(img, sigma=(rng.uniform(0.3, 0.6) * h / 32,) * 2 + (0,))
    gain = rng.uniform(0.7, 1.25)
    bias = rng.uniform(-0.12, 0.12)
    img = np.clip((img - 0.5) * gain + 0.5 + bias, 0, 1) ** math.exp(rng.uniform(-0.3, 0.3))
    if c == 1 or rng.random() < 0.25:
        img = np.repeat((img @ _LUMA)[..., None], 3, axis=2)
    sigma = rng.choice([0.0, rng.uniform(0.0, 0.05)], p=[0.4, 0.6])
    if sigma > 0:
        img = img + rng.normal(0, sigma, size=img.shape)
    img = np.clip(img, 0, 1)
    if c == 1:
        img = img[..., :1]
    return np.round(img * 255).astype(np.uint8)


def generate(n: int, task: str = "source", image_shape=(32, 32, 3), seed: int = 0, start: int = 0, progress=None):
    """Render ``n`` images of the proxy ``task``.

    Args:
        n: number of images; labels are ``(start + i) % num_classes`` (balanced).
        task: ``"source"`` (40 classes, pre-training) or ``"probe"`` (12 held-out classes).
        image_shape: (H, W, C), C in {1, 3}.
        seed: int; image ``start + i`` depends only on (seed, task, start + i).
        start: index of the first image (to render a disjoint split with the same seed).
        progress: optional callable ``progress(done, n)``.

    Returns:
        ``(images uint8 (n, H, W, C), labels int64 (n,))``.
    """
    shapes, textures = _task(task)
    h, w, c = _check_shape(image_shape)
    n = int(n)
    if n < 0:
        raise AiftError(f"number of images {n} must be >= 0")
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**32))
    k = len(shapes) * len(textures)
    images = np.empty((n, h, w, c), dtype=np.uint8)
    labels = (np.arange(start, start + n) % k).astype(np.int64)
    for i in range(n):
        rng = np.random.default_rng([int(seed), _TASK_CODE[task], start + i])
        lab = int(labels[i])
        images[i] = _render(rng, shapes[lab // len(textures)], textures[lab % len(textures)], h, w, c)
        if progress is not None and (i + 1) % 1000 == 0:
            progress(i + 1, n)
    return images, labels


def contact_sheet(task: str = "source", image_shape=(32, 32, 3), per_class: int = 6, seed: int = 0):
    """A (K*H, per_class*W, 3) uint8 mosaic: one row per class (for eyeballing the generator)."""
    h, w, c = _check_shape(image_shape)
    k = num_classes(task)
    imgs, labels = generate(k * per_class, task, image_shape, seed)
    order = np.argsort(labels, kind="stable")
    imgs = imgs[order].reshape(k, per_class, h, w, c)
    if c == 1:
        imgs = np.repeat(imgs, 3, axis=-1)
    return imgs.transpose(0, 2, 1, 3, 4).reshape(k * h, per_class * w, 3)
