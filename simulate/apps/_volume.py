"""3-D building blocks of the simulated CT pulmonary angiography (CTPA) application.

Everything here is numpy/scipy only and works on one volume at a time, so volumes can be
generated independently (any order, in parallel) from their own seeds.

Coordinates are voxel indices ``(z, y, x)`` of an isotropic grid. Intensities are
Hounsfield-like units (HU): air -1000, lung parenchyma about -850, soft tissue about 40,
contrast-filled pulmonary arteries 250-400, emboli 20-80.

The pieces:

* :func:`synthesize_volume` -- chest, lungs, a branching and tapering contrast-filled artery
  tree, emboli (the truth) and look-alikes (lymph nodes at bifurcations and beside vessels,
  low-enhancement "flow" stretches), scanner blur and noise.
* :func:`detect_candidates` -- the candidate generator. It looks only at the image: dark
  voxels enclosed by bright vessel (grey-level black top-hat inside the closed bright mask),
  split into clusters by tobogganing, small clusters dropped, nearby clusters merged.
* :func:`label_candidates` -- candidate truth from the embolus masks, and per-embolus hits.
* :func:`extract_patches` -- 2.5-D patches (axial, coronal, sagittal planes through the
  candidate as the three channels) under random rotation / scale / translation: the library's
  cutter :mod:`aift_tf.volumes`, re-exported here.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

# the 2.5-D cutter is the library's (aift_tf.volumes), re-exported for the app and its tests
from aift_tf.volumes import PLANES, augmentation_params, extract_patches  # noqa: F401

# --------------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------------


def volume_params(difficulty: float = 0.5, **overrides) -> dict:
    """Parameters of the volume model and candidate generator for a ``difficulty`` in [0, 1].

    ``difficulty`` moves *appearance* only (noise, embolus contrast and size, how dark the
    look-alikes get); the numbers of emboli and look-alikes stay fixed so that the class ratio
    barely moves. Any key can be overridden.
    """
    d = float(difficulty)
    if not 0.0 <= d <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty!r}")
    p = {
        "shape": [72, 96, 96],               # (z, y, x) voxels, isotropic (~0.7 mm, CTPA-like)
        "difficulty": d,
        # anatomy
        "lung_hu": -850.0,
        "lung_texture_hu": 35.0,
        "tissue_hu": 40.0,
        "air_hu": -1000.0,
        # artery tree
        "artery_hu": [250.0, 400.0],         # per-volume enhancement, uniform
        "segment_hu_jitter": 0.08,           # per-segment multiplicative jitter (sd)
        "root_radius": [4.8, 5.7],           # hilar trunk; lobar 3.4-4.8, segmental ~2.5-4
        "min_radius": 1.0,
        "length_factor": [2.5, 5.0],         # segment length / radius
        "min_length": 4.5,
        "branch_angle_deg": [22.0, 48.0],
        "child_ratio_major": [0.8, 0.95],
        "child_ratio_minor": [0.62, 0.85],
        "taper": 0.95,                       # radius at the end / radius at the start of a segment
        "roots_per_tree": 3,            # lobar branches leaving the hilum
        "veins": True,                   # a less-enhanced venous tree
        "vein_hu": [100.0, 170.0],
        # emboli (the positives)
        "emboli_per_volume": 2.7,            # Poisson mean (paper: 326 emboli / 121 volumes)
        "embolus_min_vessel_radius": 3.0,   # segmental or larger (lumen >= 6 voxels across)
        "embolus_min_voxels": 27,
        "embolus_min_distance": 12.0,        # voxels between embolus centres
        "embolus_hu": [40.0 * d, 40.0 + 80.0 * d],   # [20, 80] at d = 0.5
        "embolus_length": [0.8, 2.4],        # along-axis half length / vessel radius
        # partial (non-occlusive) clots: transverse half width / lumen radius, so that contrast
        # stays around ("polo mint") or beside ("railway track", eccentric/mural) the clot
        "embolus_width": [0.4 - 0.1 * d, 0.8 - 0.1 * d],   # [0.35, 0.75] at d = 0.5
        "embolus_offset": [0.0, 1.0],        # off-axis shift / room left in the lumen (1 = abuts the wall)
        # complete occlusions: the clot fills the lumen; contrast up to its convex (ellipsoidal) end
        "embolus_occlusive_fraction": 0.3,
        "embolus_occlusive_width": 1.15,     # half width / lumen radius (> 1: fills the lumen)
        # look-alikes
        "lookalike_min_vessel_radius": 1.8,
        "nodes_per_volume": 45.0,            # Poisson mean; lymph nodes at bifurcations / beside vessels
        "node_radius": [2.4, 4.5],
        "node_hu": [30.0, 70.0],
        "lowflow_per_volume": 36.0,           # Poisson mean; short stretches with reduced enhancement
        "lowflow_hu": [140.0 - 80.0 * d, 230.0 - 60.0 * d],
        "lowflow_halflength": [1.5, 3.75],   # voxels (gaussian profile sd along the axis)
        "lowflow_vessel_radius": [1.8, 5.0],  # small to lobar: flow artefacts are not size-specific
        # scanner
        "psf_sigma": 0.5,                    # voxel; partial volume / blur
        "noise_hu": 20.0 + 20.0 * d,         # gaussian noise sd (after mild correlation)
        # candidate generator (looks at the image only)
        "det_smooth": 0.5,
        "det_lung_hu": -400.0,
        "det_lung_close": 7,
        "det_dense_hu": -300.0,
        "det_bright_hu": 180.0,
        "det_radius": 6,
        "det_contrast_hu": 100.0,
        "det_hu_range": [-100.0, 160.0],
        "det_toboggan_smooth": 0.5,
        "det_min_voxels": 20,
        "det_merge_dist": 3.0,
        # truth (applied after detection): see label_candidates
        "truth_rule": "cluster",
        "truth_min_fraction": 0.25,
    }
    for k, v in overrides.items():
        if k not in p:
            raise ValueError(f"unknown volume parameter {k!r}")
        p[k] = v
    if p["truth_rule"] not in TRUTH_RULES:
        raise ValueError(f"unknown truth rule {p['truth_rule']!r}; valid: {', '.join(TRUTH_RULES)}")
    return p


# --------------------------------------------------------------------------------------------
# geometry helpers
# --------------------------------------------------------------------------------------------


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / max(float(np.sqrt(v @ v)), 1e-12)


def _cross(a, b):
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def _perpendicular_basis(d):
    d = _unit(d)
    a = (1.0, 0.0, 0.0) if abs(d[0]) < 0.9 else (0.0, 1.0, 0.0)
    e1 = _unit(_cross(d, a))
    e2 = _cross(d, e1)
    return e1, e2


def _bbox(lo, hi, shape):
    lo = np.maximum(np.floor(lo).astype(int), 0)
    hi = np.minimum(np.ceil(hi).astype(int) + 1, np.asarray(shape))
    if np.any(hi <= lo):
        return None
    return tuple(slice(a, b) for a, b in zip(lo, hi))


def _axes(sl, origin):
    """Broadcastable coordinate axes (z, y, x) of the box ``sl`` relative to ``origin``."""
    return [np.arange(s.start, s.stop, dtype=np.float64).reshape([-1 if i == k else 1 for i in range(3)]) - origin[k]
            for k, s in enumerate(sl)]


def _segment_geometry(sl, p0, p1):
    """Axis parameter t in [0, 1] and distance to the axis for the voxels of box ``sl``."""
    d = p1 - p0
    L2 = max(float(d @ d), 1e-12)
    z, y, x = _axes(sl, p0)
    t = np.clip((z * d[0] + y * d[1] + x * d[2]) / L2, 0.0, 1.0)
    dist2 = (z - t * d[0]) ** 2 + (y - t * d[1]) ** 2 + (x - t * d[2]) ** 2
    return t, np.sqrt(dist2)


# --------------------------------------------------------------------------------------------
# anatomy
# --------------------------------------------------------------------------------------------


def _anatomy(shape, rng, p):
    """Background HU, lung mask and mediastinum mask of a hemithorax block.

    The block is a crop of one hemithorax around the hilum: mediastinum (soft tissue) on the
    low-x side, chest wall on the high-x side, diaphragm dome at high z, lung in between.
    """
    Z, Y, X = shape
    z, y, x = np.meshgrid(np.arange(Z), np.arange(Y), np.arange(X), indexing="ij")
    # mediastinum: a slab on the low-x side, bulging around the hilum
    med = 0.07 * X + 0.06 * X * np.exp(-(((z - 0.5 * Z) / (0.35 * Z)) ** 2 + ((y - 0.5 * Y) / (0.35 * Y)) ** 2))
    med = med + rng.uniform(-0.5, 0.5)
    wall = X - 1 - (0.05 * X + 0.04 * X * np.cos(2 * np.pi * y / Y + rng.uniform(0, 2 * np.pi)) ** 2)
    dome = Z - 1 - (0.08 * Z + 0.18 * Z * np.exp(-(((x - 0.6 * X) / (0.5 * X)) ** 2 + ((y - 0.55 * Y) / (0.6 * Y)) ** 2)))
    front = 0.04 * Y + 1.0
    back = Y - 1 - (0.06 * Y + 1.0)
    lungs = (x > med) & (x < wall) & (z < dome) & (y > front) & (y < back)
    mediastinum = (x <= med) & (y > front) & (y < back) & (z < dome)
    hu = np.full(shape, p["tissue_hu"], dtype=np.float64)
    # lung parenchyma with correlated texture and a gravity (posterior = high y) gradient
    tex = ndi.gaussian_filter(rng.standard_normal(shape), 1.5)
    tex *= p["lung_texture_hu"] / max(tex.std(), 1e-9)
    grav = 40.0 * (y / max(Y - 1, 1) - 0.5)
    hu = np.where(lungs, p["lung_hu"] + tex + grav, hu)
    # a little fat (-100 HU) in the chest wall
    fat = (x >= wall + 1.5) & (x < wall + 3)
    hu = np.where(fat, -100.0, hu)
    hu = ndi.gaussian_filter(hu, 0.6)  # pleura / smooth boundaries
    return hu, lungs, mediastinum


# --------------------------------------------------------------------------------------------
# artery tree
# --------------------------------------------------------------------------------------------


def _rotate_towards(d, angle, azimuth):
    e1, e2 = _perpendicular_basis(d)
    perp = np.cos(azimuth) * e1 + np.sin(azimuth) * e2
    return _unit(np.cos(angle) * _unit(d) + np.sin(angle) * perp)


def grow_tree(rng, inside, start, trunk_dir, r_root, p, kind="artery"):
    """Grow one vessel tree from ``start`` (recursive binary branching, tapering radii).

    A trunk runs along ``trunk_dir`` and splits into ``roots_per_tree`` lobar branches fanning
    out; every further segment splits into a major and a minor child (Murray-like radius
    ratios, random branching angles and azimuths) until the radius falls below ``min_radius``.
    Segments must end inside ``inside`` (a few re-draws of the direction, else the branch
    stops). Returns ``(segments, bifurcations)``.
    """
    shape = np.asarray(inside.shape)
    Z, Y, X = shape
    segments, bifurcations = [], []
    stack = []
    trunk_dir = _unit(trunk_dir)
    trunk_len = 0.18 * X + rng.uniform(0, 2)
    trunk_end = start + trunk_len * trunk_dir
    segments.append(dict(p0=start, p1=trunk_end, r0=r_root, r1=r_root * p["taper"], gen=0, parent=-1, kind=kind))
    n_roots = int(p["roots_per_tree"])
    phase = rng.uniform(0, 2 * np.pi)
    e1, e2 = _perpendicular_basis(trunk_dir)
    for k in range(n_roots):
        ang = phase + 2 * np.pi * k / n_roots + rng.uniform(-0.3, 0.3)
        dvec = _unit(rng.uniform(0.5, 0.9) * trunk_dir + np.cos(ang) * e1 + np.sin(ang) * e2)
        stack.append((trunk_end.copy(), dvec, r_root * p["taper"] * rng.uniform(0.75, 0.88), 1, 0))
    bifurcations.append(dict(point=trunk_end, dirs=[s[1] for s in stack[-n_roots:]], radius=r_root * p["taper"],
                             kind=kind))
    while stack:
        p0, d, r0, gen, parent = stack.pop()
        if r0 < p["min_radius"] or gen > 16:
            continue
        L = max(p["min_length"], r0 * rng.uniform(*p["length_factor"]))
        ok = False
        for attempt in range(8):  # a few tries to stay inside the lung
            dd = d if attempt == 0 else _rotate_towards(d, rng.uniform(0.25, 1.0), rng.uniform(0, 2 * np.pi))
            p1 = p0 + L * dd
            q = np.round(p1).astype(int)
            mid = np.round(p0 + 0.5 * L * dd).astype(int)
            if np.all(q >= 0) and np.all(q < shape) and inside[tuple(q)] and inside[tuple(mid)]:
                d, ok = dd, True
                break
        if not ok:
            continue
        r1 = r0 * p["taper"]
        segments.append(dict(p0=p0, p1=p1, r0=r0, r1=r1, gen=gen, parent=parent, kind=kind))
        sid = len(segments) - 1
        # two children: a major and a minor branch, on opposite sides of the parent direction
        az = rng.uniform(0, 2 * np.pi)
        a_major = np.deg2rad(rng.uniform(*p["branch_angle_deg"])) * 0.5
        a_minor = np.deg2rad(rng.uniform(*p["branch_angle_deg"]))
        d_major = _rotate_towards(d, a_major, az)
        d_minor = _rotate_towards(d, a_minor, az + np.pi)
        r_major = r1 * rng.uniform(*p["child_ratio_major"])
        r_minor = r1 * rng.uniform(*p["child_ratio_minor"])
        kids = []
        for dv, rv in ((d_major, r_major), (d_minor, r_minor)):
            if rv >= p["min_radius"]:
                stack.append((p1.copy(), dv, rv, gen + 1, sid))
                kids.append(dv)
        if len(kids) == 2:
            bifurcations.append(dict(point=p1, dirs=kids, radius=r1, kind=kind))
    return segments, bifurcations


def _rasterize_tubes(shape, segments, lowflow):
    """Soft occupancy (partial volume) and HU of the lumen for every segment."""
    occ = np.zeros(shape, np.float64)
    hu = np.zeros(shape, np.float64)
    owner = np.full(shape, -1, np.int32)
    for sid, s in enumerate(segments):
        rmax = max(s["r0"], s["r1"])
        sl = _bbox(np.minimum(s["p0"], s["p1"]) - rmax - 1.5, np.maximum(s["p0"], s["p1"]) + rmax + 1.5, shape)
        if sl is None:
            continue
        t, dist = _segment_geometry(sl, s["p0"], s["p1"])
        r = s["r0"] + (s["r1"] - s["r0"]) * t
        o = np.clip(r - dist + 0.5, 0.0, 1.0)
        val = np.full(t.shape, s["hu"]) if sid in lowflow else s["hu"]
        L = float(np.linalg.norm(s["p1"] - s["p0"]))
        for lf in lowflow.get(sid, ()):
            w = np.exp(-0.5 * ((t - lf["t0"]) * L / lf["sd"]) ** 2)
            val = val - (s["hu"] - lf["hu"]) * w
        cur = occ[sl]
        upd = o > cur
        hu[sl] = np.where(upd, val, hu[sl])
        owner[sl] = np.where(upd, sid, owner[sl])
        occ[sl] = np.maximum(cur, o)
    return occ, hu, owner


def _soft_ellipsoid(shape, centre, axes, frame):
    """Soft (anti-aliased) occupancy of an ellipsoid and its hard mask, on the whole grid bbox."""
    rmax = float(max(axes))
    sl = _bbox(centre - rmax - 1.5, centre + rmax + 1.5, shape)
    if sl is None:
        return None, None, None
    z, y, x = _axes(sl, centre)
    q2 = 0.0
    for k in range(3):  # coordinates along the ellipsoid's axes (rows of frame)
        q2 = q2 + ((z * frame[k, 0] + y * frame[k, 1] + x * frame[k, 2]) / axes[k]) ** 2
    q = np.sqrt(q2)
    soft = np.clip((1.0 - q) * min(axes) + 0.5, 0.0, 1.0)
    return sl, soft, q <= 1.0


# --------------------------------------------------------------------------------------------
# the whole volume
# --------------------------------------------------------------------------------------------


def synthesize_volume(seed, p):
    """One synthetic CTPA volume.

    Returns a dict with ``image`` (float32 HU), ``emboli`` (int16 label map of the embolus
    masks, 0 = none, k = embolus k), ``vessel`` (bool lumen mask), ``nodes`` (bool),
    ``lowflow`` (bool), ``lungs`` (bool) and ``info`` (counts and per-embolus parameters).
    """
    if isinstance(seed, np.random.SeedSequence):  # copy: spawning must not change the caller's
        seed = np.random.SeedSequence(seed.entropy, spawn_key=seed.spawn_key)
    else:
        seed = np.random.SeedSequence(seed)
    # one independent stream per component, so that e.g. changing the number of look-alikes
    # leaves the anatomy and the emboli of a volume unchanged
    r_anat, r_art, r_vein, r_lf, r_node, r_emb, r_noise = (np.random.default_rng(c) for c in seed.spawn(7))
    shape = tuple(int(s) for s in p["shape"])
    bg, lungs, mediastinum = _anatomy(shape, r_anat, p)
    Z, Y, X = shape
    inside = lungs | mediastinum
    # arteries (contrast-filled) and veins (less enhanced in the arterial phase) from the hilum
    a_start = np.array([r_art.uniform(0.4, 0.55) * Z, r_art.uniform(0.35, 0.5) * Y, 0.0])
    a_dir = [r_art.uniform(-0.3, 0.3), r_art.uniform(-0.3, 0.3), 1.0]
    segments, bifurcations = grow_tree(r_art, inside, a_start, a_dir, r_art.uniform(*p["root_radius"]), p, "artery")
    base_hu = r_art.uniform(*p["artery_hu"])
    for s in segments:
        s["hu"] = base_hu * (1.0 + p["segment_hu_jitter"] * r_art.standard_normal())
    if p["veins"]:
        v_start = np.array([a_start[0] + r_vein.uniform(0.12, 0.25) * Z, a_start[1] + r_vein.uniform(0.05, 0.2) * Y, 0.0])
        v_dir = [r_vein.uniform(-0.2, 0.5), r_vein.uniform(-0.3, 0.3), 1.0]
        vsegs, vbifs = grow_tree(r_vein, inside, v_start, v_dir, r_vein.uniform(*p["root_radius"]) * 0.9, p, "vein")
        vein_hu = r_vein.uniform(*p["vein_hu"])
        for s in vsegs:
            s["hu"] = vein_hu * (1.0 + p["segment_hu_jitter"] * r_vein.standard_normal())
            s["parent"] = s["parent"] + len(segments) if s["parent"] >= 0 else -1
        segments = segments + vsegs
        bifurcations = bifurcations + vbifs
    for s in segments:
        s["length"] = float(np.linalg.norm(s["p1"] - s["p0"]))

    is_artery = np.array([s["kind"] == "artery" for s in segments])
    radii = np.where(is_artery, [s["r0"] for s in segments], 0.0)
    lengths = np.array([s["length"] for s in segments])

    # -- look-alike 1: low-enhancement (flow / mixing) stretches inside vessels
    lowflow = {}
    elig = np.flatnonzero((radii >= p["lowflow_vessel_radius"][0]) & (radii <= p["lowflow_vessel_radius"][1]))
    n_lf = r_lf.poisson(p["lowflow_per_volume"]) if len(elig) else 0
    for _ in range(n_lf):
        sid = int(r_lf.choice(elig, p=lengths[elig] / lengths[elig].sum()))
        lowflow.setdefault(sid, []).append(dict(
            t0=r_lf.uniform(0.2, 0.8), sd=r_lf.uniform(*p["lowflow_halflength"]), hu=r_lf.uniform(*p["lowflow_hu"])))

    occ, vhu, owner = _rasterize_tubes(shape, segments, lowflow)
    lowflow_mask = np.zeros(shape, bool)
    for sid in lowflow:
        m = (owner == sid) & (occ > 0.5)
        lowflow_mask |= m & (vhu < segments[sid]["hu"] - 0.5 * (segments[sid]["hu"] - max(l["hu"] for l in lowflow[sid])))

    # -- look-alike 2: lymph nodes / soft tissue at bifurcation crotches and beside vessels
    nodes_mask = np.zeros(shape, bool)
    n_nodes = r_node.poisson(p["nodes_per_volume"])
    big_bif = [b for b in bifurcations if b["radius"] >= p["lookalike_min_vessel_radius"] and b["kind"] == "artery"]
    elig_n = np.flatnonzero(radii >= p["lookalike_min_vessel_radius"])
    for k in range(n_nodes):
        rn = r_node.uniform(*p["node_radius"])
        if big_bif and (k % 2 == 0):
            b = big_bif[r_node.integers(len(big_bif))]
            c_dir = _unit(_unit(b["dirs"][0]) + _unit(b["dirs"][1]))
            centre = b["point"] + c_dir * (b["radius"] * 1.1 + rn * r_node.uniform(0.9, 1.3))
        elif len(elig_n):
            s = segments[int(r_node.choice(elig_n))]
            e1, e2 = _perpendicular_basis(s["p1"] - s["p0"])
            az = r_node.uniform(0, 2 * np.pi)
            centre = s["p0"] + r_node.uniform(0.2, 0.8) * (s["p1"] - s["p0"]) + \
                (np.cos(az) * e1 + np.sin(az) * e2) * (s["r0"] + rn * r_node.uniform(0.6, 1.0))
        else:
            continue
        axes = rn * r_node.uniform(0.75, 1.25, size=3)
        frame = np.linalg.qr(r_node.standard_normal((3, 3)))[0]
        sl, soft, hard = _soft_ellipsoid(shape, centre, axes, frame)
        if sl is None:
            continue
        node_hu = r_node.uniform(*p["node_hu"])
        bg[sl] = bg[sl] * (1 - soft) + node_hu * soft
        nodes_mask[sl] |= hard

    # -- emboli (truth): dark ellipsoids inside the lumen of arteries wide enough
    emboli = np.zeros(shape, np.int16)
    emb_soft = np.zeros(shape, np.float64)
    emb_hu = np.zeros(shape, np.float64)
    lumen = occ >= 0.5
    # intrapulmonary arteries only: the hilar trunk (generation 0) runs in the mediastinum
    gens = np.array([s["gen"] for s in segments])
    elig_e = np.flatnonzero((radii >= p["embolus_min_vessel_radius"]) & (gens >= 1))
    n_emb = r_emb.poisson(p["emboli_per_volume"]) if len(elig_e) else 0
    info_emb = []
    k = 0
    tries = 0
    while k < n_emb and tries < 20 * max(n_emb, 1):
        tries += 1
        w = lengths[elig_e] * radii[elig_e] ** 2  # emboli lodge more often in larger arteries
        sid = int(r_emb.choice(elig_e, p=w / w.sum()))
        s = segments[sid]
        dvec = _unit(s["p1"] - s["p0"])
        e1, e2 = _perpendicular_basis(dvec)
        t = r_emb.uniform(0.15, 0.85)
        r = s["r0"] + (s["r1"] - s["r0"]) * t
        az = r_emb.uniform(0, 2 * np.pi)
        a = max(1.2, r * r_emb.uniform(*p["embolus_length"]))
        occlusive = bool(r_emb.random() < p["embolus_occlusive_fraction"])
        wfrac = r_emb.uniform(*p["embolus_width"])   # drawn either way: same stream for both kinds
        if occlusive:
            # complete occlusion: fills the lumen (truth clipped to it); its rounded end is the
            # convex meniscus that the contrast column stops at
            b1 = b2 = p["embolus_occlusive_width"] * r
            off = 0.0
            r_emb.uniform(0.7, 1.0)
            r_emb.uniform(0.0, 1.0)
        else:
            # partial: a fraction of the lumen, central ("polo mint") to eccentric against the wall
            # ("railway track" on one side); the off-axis shift is a fraction of the room left
            b1 = max(0.8, r * wfrac)
            b2 = max(0.8, b1 * r_emb.uniform(0.7, 1.0))
            off = r_emb.uniform(*p["embolus_offset"]) * max(r - b1, 0.0)
        centre = s["p0"] + t * (s["p1"] - s["p0"]) + off * (np.cos(az) * e1 + np.sin(az) * e2)
        rot = r_emb.uniform(0, 2 * np.pi)
        f1 = np.cos(rot) * e1 + np.sin(rot) * e2
        f2 = _cross(dvec, f1)
        frame = np.stack([dvec, f1, f2])
        if any(np.linalg.norm(centre - np.asarray(o["centre"])) < p["embolus_min_distance"] for o in info_emb):
            continue
        sl, soft, hard = _soft_ellipsoid(shape, centre, (a, b1, b2), frame)
        if sl is None:
            continue
        truth = hard & lumen[sl] & (emboli[sl] == 0)
        if truth.sum() < p["embolus_min_voxels"]:
            continue
        k += 1
        h = r_emb.uniform(*p["embolus_hu"])
        sub = emboli[sl]
        sub[truth] = k
        emboli[sl] = sub
        cur = emb_soft[sl]
        upd = soft > cur
        eh = emb_hu[sl]
        eh[upd] = h
        emb_hu[sl] = eh
        emb_soft[sl] = np.maximum(cur, soft)
        info_emb.append(dict(segment=sid, vessel_radius=float(r), hu=float(h), voxels=int(truth.sum()),
                             half_axes=[float(a), float(b1), float(b2)], offset=float(off), occlusive=occlusive,
                             occlusion=float(min(1.0, b1 * b2 / max(r * r, 1e-9))), centre=centre.tolist()))

    # -- compose, blur (partial volume / scanner PSF), noise
    lumen_val = vhu * (1.0 - emb_soft) + emb_hu * emb_soft
    img = bg * (1.0 - occ) + lumen_val * occ
    img = ndi.gaussian_filter(img, p["psf_sigma"])
    noise = ndi.gaussian_filter(r_noise.standard_normal(shape), 0.5)
    noise *= p["noise_hu"] / max(noise.std(), 1e-9)
    img = np.clip(img + noise, -1024.0, 3071.0).astype(np.float32)
    info = dict(num_segments=len(segments), num_artery_segments=int(is_artery.sum()), num_bifurcations=len(bifurcations), num_emboli=k,
                num_nodes=int(n_nodes), num_lowflow=int(n_lf), artery_hu=float(base_hu), emboli=info_emb)
    return dict(image=img, emboli=emboli, vessel=lumen, nodes=nodes_mask, lowflow=lowflow_mask,
                lungs=lungs, info=info)


# --------------------------------------------------------------------------------------------
# candidate generator (no truth)
# --------------------------------------------------------------------------------------------

_OFFSETS = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)
                     if (a, b, c) != (0, 0, 0)])


def toboggan(values, mask):
    """Tobogganing: every voxel of ``mask`` slides to its lowest 26-neighbour inside the mask
    until it reaches a local minimum; voxels reaching the same minimum form one cluster.

    Returns an int32 label image (0 = outside the mask, 1..k = clusters).
    """
    shape = values.shape
    pad = np.full(tuple(s + 2 for s in shape), np.inf)
    inner = tuple(slice(1, -1) for _ in shape)
    pad[inner] = np.where(mask, values, np.inf)
    pm = np.zeros(pad.shape, bool)
    pm[inner] = mask
    idx = np.flatnonzero(pm)
    if idx.size == 0:
        return np.zeros(shape, np.int32)
    flat = pad.ravel()
    strides = np.array([pad.shape[1] * pad.shape[2], pad.shape[2], 1])
    best = idx.copy()
    bestv = flat[idx].copy()
    for off in _OFFSETS:
        nb = idx + int(off @ strides)
        v = flat[nb]
        better = v < bestv
        best[better] = nb[better]
        bestv[better] = v[better]
    ptr = np.searchsorted(idx, best)
    while True:
        nxt = ptr[ptr]
        if np.array_equal(nxt, ptr):
            break
        ptr = nxt
    _, lab = np.unique(ptr, return_inverse=True)
    out = np.zeros(pad.shape, np.int32)
    out.ravel()[idx] = lab.astype(np.int32) + 1
    return out[inner]


def _centroids(labels, n):
    """Centroids (n, 3) of labels 1..n."""
    flat = labels.ravel()
    sel = flat > 0
    lab = flat[sel]
    cnt = np.maximum(np.bincount(lab, minlength=n + 1)[1:], 1)
    coords = np.unravel_index(np.flatnonzero(sel), labels.shape)
    return np.stack([np.bincount(lab, weights=c, minlength=n + 1)[1:] / cnt for c in coords], axis=1)


def detect_candidates(image, p, return_mask=False):
    """Candidate generator: dark-inside-bright voxels, tobogganed into clusters.

    Looks only at the image:

    1. smooth the image (gaussian ``det_smooth`` voxels);
    2. lung mask = voxels below ``det_lung_hu`` closed by a ball of radius ``det_lung_close``
       and with the holes of every axial slice filled (brings the vessels inside the lung in,
       leaves mediastinum / chest wall out);
       search region = dense voxels (HU > ``det_dense_hu``: vessels, emboli, nodes) inside the
       lung mask, eroded by one voxel to drop the partial-volume rims at vessel walls;
    3. dark-inside-bright: HU in ``det_hu_range`` and at least ``det_contrast_hu`` darker than
       the brightest voxel within a (2 ``det_radius`` + 1)^3 neighbourhood, which must itself be
       contrast-enhanced (> ``det_bright_hu``);
    4. tobogganing splits the candidate voxels into clusters (one per local minimum of the
       image smoothed by ``det_toboggan_smooth``); touching clusters whose centroids lie within ``det_merge_dist`` voxels
       are merged; clusters smaller than ``det_min_voxels`` are dropped.

    Returns ``(centres (k, 3) float64, cluster label image int32)``; label i+1 <-> centres[i].
    """
    sm = ndi.gaussian_filter(image.astype(np.float64), p["det_smooth"])
    cross = ndi.generate_binary_structure(3, 1)
    k = int(p["det_lung_close"])
    lung = ndi.binary_dilation(sm < p["det_lung_hu"], structure=cross, iterations=k)
    lung = ndi.binary_erosion(lung, structure=cross, iterations=k, border_value=1)
    # plus whatever the lung encloses in an axial slice (vessel / node complexes of any size)
    axial = np.zeros((3, 3, 3), bool)
    axial[1] = ndi.generate_binary_structure(2, 1)
    lung |= ndi.binary_fill_holes(lung, structure=axial)
    dense = sm > p["det_dense_hu"]
    region = ndi.binary_erosion(dense & lung, structure=cross)
    c = 2 * int(p["det_radius"]) + 1
    local_max = ndi.maximum_filter(sm, size=(c, c, c), mode="nearest")
    lo, hi = p["det_hu_range"]
    cand = (region & (sm >= lo) & (sm <= hi) & (local_max > p["det_bright_hu"])
            & (local_max - sm >= p["det_contrast_hu"]))
    ts = float(p["det_toboggan_smooth"])
    clusters = toboggan(ndi.gaussian_filter(image.astype(np.float64), ts) if ts > 0 else image.astype(np.float64), cand)
    n = int(clusters.max())
    if n == 0:
        return (np.zeros((0, 3)), clusters, cand) if return_mask else (np.zeros((0, 3)), clusters)
    ids = np.arange(1, n + 1)
    cents = _centroids(clusters, n)
    # merge touching clusters with close centroids (union-find over adjacent pairs)
    parent = np.arange(n + 1)

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    pairs = set()
    for ax in range(3):
        a = np.moveaxis(clusters, ax, 0)
        l1, l2 = a[:-1].ravel(), a[1:].ravel()
        sel = (l1 > 0) & (l2 > 0) & (l1 != l2)
        for u, v in set(zip(l1[sel].tolist(), l2[sel].tolist())):
            pairs.add((min(u, v), max(u, v)))
    for u, v in sorted(pairs):
        if np.linalg.norm(cents[u - 1] - cents[v - 1]) <= p["det_merge_dist"]:
            ru, rv = find(u), find(v)
            if ru != rv:
                parent[max(ru, rv)] = min(ru, rv)
    roots = np.array([find(i) for i in range(n + 1)])
    merged = roots[clusters]
    merged[clusters == 0] = 0
    uniq = np.unique(merged[merged > 0])
    remap = np.zeros(n + 1, np.int32)
    remap[uniq] = np.arange(1, len(uniq) + 1)
    merged = remap[merged]
    m = len(uniq)
    ids = np.arange(1, m + 1)
    sizes = np.bincount(merged.ravel(), minlength=m + 1)[1:]
    keep = np.flatnonzero(sizes >= p["det_min_voxels"]) + 1
    remap = np.zeros(m + 1, np.int32)
    remap[keep] = np.arange(1, len(keep) + 1)
    final = remap[merged]
    if len(keep) == 0:
        return (np.zeros((0, 3)), final, cand) if return_mask else (np.zeros((0, 3)), final)
    cents = _centroids(final, len(keep))
    return (cents, final, cand) if return_mask else (cents, final)


TRUTH_RULES = ("cluster", "centre")


def label_candidates(clusters, emboli, nodes=None, lowflow=None, min_fraction=0.25, rule="cluster",
                     centres=None):
    """Truth for candidates from the embolus label map ("a candidate is true when it lies in an
    embolus"), applied only after detection.

    The embolus masks are dilated by one voxel (3x3x3: the PSF, sigma 0.5, and the soft edge
    spread a clot's dark footprint about one voxel beyond its hard mask). Then, with

    * ``rule="cluster"`` (default): a candidate is positive when at least ``min_fraction`` of its
      tobogganing cluster's voxels lie in the dilated mask -- a fragment of a clot that sits on
      the clot is positive, a cluster that only brushes the clot with a few voxels is not;
    * ``rule="centre"``: a candidate is positive when its centre (``centres``, rounded to the
      nearest voxel; the point the patches are centred on) lies in the dilated mask.

    Measured on the 30 quick volumes of generator version 2 (seed 0, d = 0.5; see the data sheet) the two rules agree
    on all but ~30 of 1,265 candidates; the union of both adds one positive to "cluster".

    An embolus is *hit* when a positive candidate's cluster overlaps it (dilated). Also returns a
    coarse ``source`` per candidate for reporting: 0 embolus, 1 lymph node, 2 low-enhancement
    stretch, 3 other (bifurcation / wall / noise).
    """
    if rule not in TRUTH_RULES:
        raise ValueError(f"unknown truth rule {rule!r}; valid: {', '.join(TRUTH_RULES)}")
    n = int(clusters.max())
    ids = np.arange(1, n + 1)
    n_emb = int(emboli.max())
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(n_emb, bool), np.zeros(0, np.int64)
    emb_dil = ndi.grey_dilation(emboli, size=(3, 3, 3))
    sizes = np.asarray(ndi.sum_labels(np.ones_like(clusters), clusters, ids), dtype=np.float64)
    if rule == "cluster":
        in_emb = np.asarray(ndi.sum_labels((emb_dil > 0).astype(np.float64), clusters, ids))
        labels = (in_emb >= min_fraction * sizes).astype(np.int64)
    else:
        if centres is None:
            centres = _centroids(clusters, n)
        q = np.round(np.asarray(centres, dtype=np.float64)).astype(int)
        q = np.clip(q, 0, np.asarray(emboli.shape) - 1)
        labels = (emb_dil[tuple(q.T)] > 0).astype(np.int64)
    hit = np.zeros(n_emb, bool)
    if n_emb:
        pos_ids = ids[labels == 1]
        sel = np.isin(clusters, pos_ids) & (emb_dil > 0)
        hit[np.unique(emb_dil[sel]) - 1] = True
    source = np.full(n, 3, np.int64)
    for code, mask in ((2, lowflow), (1, nodes)):
        if mask is not None:
            near = ndi.binary_dilation(mask, iterations=1)
            frac = np.asarray(ndi.sum_labels(near.astype(np.float64), clusters, ids)) / sizes
            source[(frac >= 0.25) & (source == 3)] = code
    source[labels == 1] = 0
    return labels, hit, source
