"""Simulated polyp detection in colonoscopy videos: candidates from a blob detector, polyp vs background.

Stand-in for the private data of Zhou et al. (CVPR 2017), application "polyp detection": 38
patients with one video each (21 train, 11 of them with polyps; 17 test, 8 with polyps); a
candidate generator yields ~16,300 train / ~11,950 test candidates, about 1 true polyp in 10; 24
patches per candidate = 3 box scales {1.0, 1.2, 1.5} x 8 flips/rotations, with +-10 % translations.

Generative model, per patient (:mod:`._mucosa` does the surface, camera and shading):

* one rendered mucosal scene per patient and a smooth camera drift over it (frames are temporally
  correlated; the same polyp moves smoothly through consecutive frames and leaves the view);
* patients "with polyps" get 1 + Binomial(3, 0.5) polyps (:func:`add_polyp`): height fields of the
  same tissue (sessile dome, pedunculated head on a stalk, or flat), radius 6-15 px at the 96-px
  frame, lobulated surface, albedo = the local mucosa tinted slightly paler/pinker (70 %) or redder
  with contrast in [0.35, 1] * 0.6 / (0.5 + 0.5 * difficulty), plus a fine capillary network. They
  are shaded by the scene's scope light like the folds (Lambert + specular glint on the lit side,
  darker far side, crease at the base), and, being closer to the scope, get an inverse-square
  proximity gain 1 + 2 dh / D (also applied to the benign bumps);
* every patient gets Poisson(6 * difficulty) benign mucosal bumps and temporal runs (mean 6 frames,
  ~30 % of frames, none elsewhere) of bubbles / glare / motion blur / defocus;
* the **candidate generator** sees frames only (never the truth): at 4 scales, the scale-normalised
  Hessian-determinant blob response of the illumination-flattened log brightness (curvature/shading
  of a bump, bright or dark) plus a DoG blob response of its edge energy (closed outlines);
  3-D local maxima, non-maximum suppression, at most ``k_max`` = 6 per frame, plus a few random
  proposals. A candidate is a polyp iff its box centre lies inside a polyp footprint or within
  1/8 of the box side of it;
* patches: box scales {1.0, 1.2, 1.5} x a subset of the 8 dihedral transforms (quick: 4 = identity,
  rot90, flip, flip+rot180 -> m = 12; paper: all 8 -> m = 24), each with an independent random
  translation of up to +-10 % of the box side.

``groups`` = patient id; the split is by patient. ``attrs["generator_sensitivity"]`` reports the
fraction of polyp frames (polyp centre in view) and of polyps with >= 1 true candidate.
"""

from __future__ import annotations

import time

import numpy as np
from scipy import ndimage as ndi

from aift_tf.errors import AiftError
from simulate.apps import _mucosa as M
from simulate.apps import scale_config

NAME = "polyp-detection"
DESCRIPTION = ("Polyp detection in simulated colonoscopy videos: blob-detector candidates (polyps, "
               "folds, bumps, glare, bubbles), 3 box scales x flips/rotations, split by patient")
SCALES = ("quick", "paper")
CLASS_NAMES = ["background", "polyp"]
BOX_SCALES = (1.0, 1.2, 1.5)


def _patients(n_train, n_train_pos, n_val, n_val_pos, n_test, n_test_pos):
    out = []
    for sp, n, npos in (("train", n_train, n_train_pos), ("val", n_val, n_val_pos), ("test", n_test, n_test_pos)):
        out += [(sp, i < npos) for i in range(n)]
    return out


# patients: list of (split, has_polyp). The val patients are an addition to the paper's 38.
CONFIGS = {
    "quick": dict(patients=_patients(6, 3, 3, 2, 4, 2), frames=30, frame=96, scene=320, patch=32,
                  transforms=(0, 1, 4, 6), k_max=6, p_random=0.2),
    "paper": dict(patients=_patients(21, 11, 3, 2, 17, 8), frames=120, frame=96, scene=320, patch=32,
                  transforms=(0, 1, 2, 3, 4, 5, 6, 7), k_max=6, p_random=0.2),
}
DOG_SIGMAS = (4.5, 6.75, 10.0, 14.0)   # px at the 96-px frame
DOG_THRESHOLD = 0.5
HIT_TOLERANCE = 0.125           # x box side: a candidate centred this close to a polyp is a polyp
POLYP_RADIUS = (6.0, 15.0)      # px at the 96-px frame
POLYP_CONTRAST = 0.6            # max colour contrast at difficulty 0.5
P_EXTRA_POLYP = 0.5             # polyp patients have 1 + Binomial(3, p) polyps
BUMPS_PER_SCENE = 6.0           # x difficulty, per 320^2 scene px
P_DISTRACTOR = 0.3              # fraction of frames inside a distractor run
MEAN_DISTRACTOR_RUN = 6.0       # frames
SCOPE_DISTANCE = 50.0           # px at the 96-px frame: scope tip to mucosa (proximity gain of bumps)


def _difficulty(d):
    d = float(d)
    if not 0.0 <= d <= 2.0:
        raise AiftError(f"difficulty {d!r} must be in [0, 2]")
    return d


POLYP_KINDS = ("sessile", "pedunculated", "flat")
POLYP_KIND_P = (0.55, 0.25, 0.20)
DISTRACTORS = ("blur", "motion", "bubbles", "glare")
DISTRACTOR_P = (0.25, 0.2, 0.3, 0.25)
DISTRACTOR_SEVERITY = {"blur": 1.0, "motion": 1.0, "bubbles": 0.5, "glare": 1.0}


def _smoothstep(e0, e1, x):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def add_polyp(scene, rng, cy, cx, r, *, kind="sessile", contrast=0.5, mask_value=1):
    """Add a polyp to ``scene`` in place: a protruding growth *of the same tissue* as the mucosa.

    The polyp is a height field (rendered by the scene's light like any fold: Lambert + specular
    glint on the lit side, darker far side, crease at the base) with an irregular outline of radius
    ``r`` around (``cy``, ``cx``) (the head), a lobulated surface with fine pits, and an albedo that
    is the local mucosa colour (its large submucosal vessels blurred out) tinted slightly paler/pinker
    or redder by ``contrast``, overlaid with a fine reticular capillary pattern. ``kind``:
    ``sessile`` (dome, height 0.35-0.55 r), ``pedunculated`` (rounder head, height 0.55-0.75 r, on
    a stalk running 1.1-1.7 r to one side) or ``flat`` (height 0.1-0.18 r, colour/texture mostly).
    ``scene["mask"]`` is set to ``mask_value`` on the footprint (head and stalk).
    """
    S = scene["height"].shape[0]
    ped = kind == "pedunculated"
    stalk_len = rng.uniform(1.1, 1.7) * r if ped else 0.0
    pad = int(np.ceil(1.5 * r + stalk_len)) + 4
    y0, y1 = max(0, int(cy) - pad), min(S, int(cy) + pad + 1)
    x0, x1 = max(0, int(cx) - pad), min(S, int(cx) + pad + 1)
    if y1 - y0 < 4 or x1 - x0 < 4:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    rot = rng.uniform(0, 2 * np.pi)
    el = rng.uniform(0.78, 1.0)
    du = dx * np.cos(rot) + dy * np.sin(rot)
    dv = (-dx * np.sin(rot) + dy * np.cos(rot)) / el
    ang = np.arctan2(dv, du)
    irr = rng.uniform(0.04, 0.14)
    R = r * (1 + sum(irr * rng.uniform(0.3, 1.0) / k * np.cos(k * ang + rng.uniform(0, 6.3)) for k in (2, 3, 5)))
    rho = np.sqrt(du ** 2 + dv ** 2) / R
    shp = yy.shape
    if kind == "flat":
        H, p = rng.uniform(0.10, 0.18) * r, 1.5
    elif ped:
        H, p = rng.uniform(0.55, 0.75) * r, 0.75
    else:
        H, p = rng.uniform(0.35, 0.55) * r, 1.0
    h = H * np.clip(1 - rho ** 2, 0, None) ** p
    foot = _smoothstep(1.12, 0.85, rho)
    if ped:
        # stalk: a tapering ridge from under the head to its base on the mucosa (direction -rot)
        s = np.clip(-du / stalk_len, 0, 1)                     # 0 at head centre, 1 at the base
        d = np.sqrt(dv ** 2 * el ** 2 + np.clip(-du - stalk_len, 0, None) ** 2)
        w = r * (0.32 + 0.12 * s)
        prof = np.exp(-0.5 * (d / w) ** 2) * (s > 0) * (0.55 - 0.3 * s) * H
        h = np.maximum(h, prof)
        foot = np.maximum(foot, _smoothstep(1.6, 1.0, d / w) * (s > 0))
    lob = 1 + 0.12 * M.smooth_noise(rng, shp, max(1.0, 0.3 * r))
    h = h * lob + 0.025 * r * M.smooth_noise(rng, shp, 0.8) * foot
    scene["height"][y0:y1, x0:x1] += h.astype(np.float32)
    # albedo: the local mucosa colour without its large vessels, tinted, with a capillary network
    a = scene["albedo"][y0:y1, x0:x1]
    base = ndi.gaussian_filter(a, (2.0, 2.0, 0))
    if rng.random() < 0.7:
        tint = 1 + contrast * np.array([0.04, 0.30, 0.26], np.float32)      # paler / pinker
    else:
        tint = 1 + contrast * np.array([0.04, -0.10, -0.06], np.float32)    # slightly redder
    band = M.smooth_noise(rng, shp, 1.0) - 0.8 * M.smooth_noise(rng, shp, 2.5)
    net = np.exp(-(band / (0.35 * band.std() + 1e-6)) ** 2)                   # thin reticular lines
    va = rng.uniform(0.10, 0.25)
    pol = base * tint * (1 - va * net[..., None] * np.array([0.2, 0.5, 0.45], np.float32))
    f3 = foot[..., None]
    scene["albedo"][y0:y1, x0:x1] = np.clip(a * (1 - f3) + pol * f3, 0.02, 1.0).astype(np.float32)
    if "mask" not in scene:
        scene["mask"] = np.zeros_like(scene["height"])
    m = scene["mask"][y0:y1, x0:x1]
    scene["mask"][y0:y1, x0:x1] = np.where(foot > 0.5, mask_value, m)


def render_patient(seed_seq, cfg, has_polyp, difficulty=1.0):
    """Render one patient's video; returns frames (T, F, F, 3), mask (T, F, F) polyp id (0 = none),
    polyp specs, per-frame visibility of each polyp centre, distractor episodes and the camera path."""
    rng = np.random.default_rng(seed_seq)
    F, S, T = int(cfg["frame"]), int(cfg["scene"]), int(cfg["frames"])
    u = F / 96.0
    scene = M.make_scene(rng, S)
    scene["mask"] = np.zeros_like(scene["height"])
    path = M.camera_path(rng, T, S, F)
    # benign mucosal bumps (hard negatives), uniformly over the scene
    h_base = scene["height"].copy()
    n_bumps = rng.poisson(BUMPS_PER_SCENE * difficulty * (S / 320.0) ** 2)
    for _ in range(n_bumps):
        r = rng.uniform(3.0, 8.0) * u
        M.add_bump(scene, rng, rng.uniform(0, S), rng.uniform(0, S), r, height=rng.uniform(0.2, 0.4) * r,
                   color=1 + rng.uniform(-0.04, 0.04, 3), texture=0.03, irregular=0.1)
    polyps = []
    if has_polyp:
        n_pol = 1 + int(rng.binomial(3, P_EXTRA_POLYP))
        cmax = POLYP_CONTRAST / (0.5 + 0.5 * difficulty)
        t0s = np.sort(rng.choice(np.arange(int(0.1 * T), int(0.9 * T) + 1), n_pol, replace=False))
        for j, t0 in enumerate(t0s):
            off = rng.uniform(-0.25, 0.25, 2) * F
            y, x = M.frame_to_scene(path, F, int(t0), F / 2 + off[0], F / 2 + off[1])
            kind = str(rng.choice(POLYP_KINDS, p=POLYP_KIND_P))
            r = rng.uniform(*POLYP_RADIUS) * u * (1.2 if kind == "flat" else 1.0)
            c = rng.uniform(0.35, 1.0) * cmax
            add_polyp(scene, rng, y, x, r, kind=kind, contrast=c, mask_value=j + 1)
            polyps.append({"y": float(y), "x": float(x), "radius": float(r), "kind": kind, "contrast": float(c)})
    # protrusions are closer to the scope's light: inverse-square gain (D / (D - dh))^2 ~ 1 + 2 dh / D
    dh = np.clip(scene["height"] - h_base, 0, None)
    scene["albedo"] *= np.clip(1 + 2 * dh / (SCOPE_DISTANCE * u), 1.0, 1.6)[..., None]
    np.clip(scene["albedo"], 0.02, 1.0, out=scene["albedo"])
    out = M.render_frames(scene, path, F, rng, specular=0.4)
    frames, mask = out["frames"], np.rint(out["mask"]).astype(np.int64)
    ep = M.episodes(rng, T, P_DISTRACTOR, mean_bad=MEAN_DISTRACTOR_RUN, kinds=DISTRACTORS, kind_p=DISTRACTOR_P,
                    sev_bad=(0.1, 0.6), sev_clean=(0.0, 0.0), p_nuisance=0.0)
    sev = ep["severity"] * np.array([DISTRACTOR_SEVERITY[k] for k in DISTRACTORS])[np.maximum(ep["kind"], 0)]
    M.degrade(frames, ep["kind"], sev, rng, kinds=DISTRACTORS)
    # polyp centre visibility per frame
    vis = np.zeros((T, len(polyps)), bool)
    for j, p in enumerate(polyps):
        fy, fx = M.scene_to_frame(path, F, np.arange(T), p["y"], p["x"])
        vis[:, j] = (fy >= 0) & (fy <= F - 1) & (fx >= 0) & (fx <= F - 1)
    return {"frames": frames, "mask": mask, "polyps": polyps, "visible": vis, "path": path,
            "n_bumps": int(n_bumps), "distractor": ep["kind"]}


def _cue_maps(frames, sigmas):
    """Scale-normalised blob responses (T, K, F, F) of the frames: Hessian-determinant blobs of the
    illumination-flattened log brightness (bright or dark, i.e. shading/curvature of a bump) plus
    DoG blobs of its edge energy (closed outlines: creases, rims), each divided by a fixed scale."""
    L = np.log(frames.mean(-1) + 0.04)
    L = L - ndi.gaussian_filter(L, (0, 16 * sigmas[0] / DOG_SIGMAS[0], 16 * sigmas[0] / DOG_SIGMAS[0]))
    gy = ndi.gaussian_filter(L, (0, 1.2, 1.2), order=(0, 1, 0))
    gx = ndi.gaussian_filter(L, (0, 1.2, 1.2), order=(0, 0, 1))
    edge = np.sqrt(gy ** 2 + gx ** 2)
    out = np.empty((frames.shape[0], len(sigmas)) + frames.shape[1:3], np.float32)
    for k, s in enumerate(sigmas):
        gyy = ndi.gaussian_filter(L, (0, s, s), order=(0, 2, 0))
        gxx = ndi.gaussian_filter(L, (0, s, s), order=(0, 0, 2))
        gxy = ndi.gaussian_filter(L, (0, s, s), order=(0, 1, 1))
        det = np.sqrt(np.clip(s ** 4 * (gxx * gyy - gxy ** 2), 0, None)) / 0.05
        e = (ndi.gaussian_filter(edge, (0, s, s)) - ndi.gaussian_filter(edge, (0, 1.6 * s, 1.6 * s))) / 0.01
        out[:, k] = det + e
    return out


def candidate_generator(frames, rng, *, k_max=6, p_random=0.2, threshold=DOG_THRESHOLD):
    """Truth-free candidate generator on frames (T, F, F, 3) in [0, 1].

    Cue map (:func:`_cue_maps`) at scales ``DOG_SIGMAS``; 3-D (scale, y, x) local maxima above
    ``threshold``; greedy non-maximum suppression (centres closer than half the larger box are
    merged); at most ``k_max`` per frame; plus Poisson(``p_random``) random proposals per frame.
    Box side = 2*sqrt(2)*2*sigma. Returns arrays t, cy, cx, side, score, random (bool).
    """
    T, F = frames.shape[:2]
    u = F / 96.0
    sig = np.array(DOG_SIGMAS) * u
    D = _cue_maps(frames, sig)
    mx = ndi.maximum_filter(D, size=(1, 3, 5, 5), mode="nearest")
    b = int(round(3 * u))
    peak = (D == mx) & (D > threshold)
    peak[..., :b, :] = False
    peak[..., -b:, :] = False
    peak[..., :, :b] = False
    peak[..., :, -b:] = False
    tt, kk, yy, xx = np.nonzero(peak)
    score = D[tt, kk, yy, xx]
    side = 2 * np.sqrt(2) * 2 * sig[kk]
    out_t, out_y, out_x, out_s, out_sc, out_r = [], [], [], [], [], []
    order = np.lexsort((-score, tt))
    tt, yy, xx, side, score = tt[order], yy[order], xx[order], side[order], score[order]
    starts = np.searchsorted(tt, np.arange(T + 1))
    for t in range(T):
        a, e = starts[t], starts[t + 1]
        keep = []
        for i in range(a, e):
            if len(keep) >= k_max:
                break
            if all(np.hypot(yy[i] - yy[j], xx[i] - xx[j]) >= 0.5 * max(side[i], side[j]) for j in keep):
                keep.append(i)
        for i in keep:
            out_t.append(t); out_y.append(yy[i]); out_x.append(xx[i]); out_s.append(side[i])
            out_sc.append(score[i]); out_r.append(False)
        for _ in range(rng.poisson(p_random)):
            s = rng.uniform(20, 50) * u
            out_t.append(t); out_y.append(rng.uniform(s / 2, F - s / 2)); out_x.append(rng.uniform(s / 2, F - s / 2))
            out_s.append(s); out_sc.append(0.0); out_r.append(True)
    return {"t": np.array(out_t, np.int64), "cy": np.array(out_y, np.float64), "cx": np.array(out_x, np.float64),
            "side": np.array(out_s, np.float64), "score": np.array(out_sc, np.float64),
            "random": np.array(out_r, bool)}


def label_candidates(mask, cand, tol=HIT_TOLERANCE):
    """Polyp id (0 = background) of each candidate: the polyp whose footprint contains the box
    centre or lies within ``tol`` x box side of it (a box centred on a polyp's rim is a hit)."""
    F = mask.shape[1]
    iy = np.clip(np.rint(cand["cy"]).astype(int), 0, F - 1)
    ix = np.clip(np.rint(cand["cx"]).astype(int), 0, F - 1)
    hit = np.zeros(len(cand["t"]), np.int64)
    for t in np.unique(cand["t"]):
        m = mask[t]
        if not m.any():
            continue
        d, (ny, nx) = ndi.distance_transform_edt(m == 0, return_indices=True)
        sel = np.nonzero(cand["t"] == t)[0]
        ok = d[iy[sel], ix[sel]] <= tol * cand["side"][sel]
        hit[sel] = np.where(ok, m[ny[iy[sel], ix[sel]], nx[iy[sel], ix[sel]]], 0)
    return hit


def candidate_patches(rng, frames, cand, patch, transforms):
    """Patches (n, 3*len(transforms), P, P, 3): box scales x transforms, +-10 % translations."""
    n = len(cand["t"])
    combos = [(s, d) for s in BOX_SCALES for d in transforms]
    m = len(combos)
    sc = np.array([s for s, _ in combos])[None, :]
    dih = np.broadcast_to(np.array([d for _, d in combos])[None, :], (n, m))
    side = cand["side"][:, None] * sc
    cy = cand["cy"][:, None] + rng.uniform(-0.1, 0.1, (n, m)) * side
    cx = cand["cx"][:, None] + rng.uniform(-0.1, 0.1, (n, m)) * side
    t = np.broadcast_to(cand["t"][:, None], (n, m))
    return M.crop_patches(frames, t, cy, cx, side, dih, patch)


def generate(scale="quick", seed=0, progress=None, *, difficulty=1.0, config=None):
    """Generate the application (app contract). ``config`` overrides ``CONFIGS[scale]`` entries."""
    difficulty = _difficulty(difficulty)
    cfg = scale_config(NAME, CONFIGS, scale, config)
    t0 = time.time()
    pats = cfg["patients"]
    root = np.random.SeedSequence(int(seed))
    seeds = root.spawn(len(pats))
    P, tr = int(cfg["patch"]), tuple(cfg["transforms"])
    chunks = []
    labels, groups, split = [], [], []
    n_pf = n_pf_hit = n_pol = n_pol_hit = 0
    n_bumps = 0
    per_patient = []
    for g, ((sp, has), ss) in enumerate(zip(pats, seeds)):
        vid = render_patient(ss, cfg, has, difficulty)
        crng = np.random.default_rng(ss.spawn(1)[0])
        cand = candidate_generator(vid["frames"], crng, k_max=cfg["k_max"], p_random=cfg["p_random"])
        hit_id = label_candidates(vid["mask"], cand)
        lab = (hit_id > 0).astype(np.int64)
        for j in range(len(vid["polyps"])):
            frames_vis = np.nonzero(vid["visible"][:, j])[0]
            hit_frames = np.unique(cand["t"][hit_id == j + 1])
            n_pf += len(frames_vis)
            n_pf_hit += len(np.intersect1d(frames_vis, hit_frames))
            n_pol += 1
            n_pol_hit += int(len(hit_frames) > 0)
        chunks.append(M.to_uint8(candidate_patches(crng, vid["frames"], cand, P, tr)))
        labels.append(lab)
        groups.append(np.full(len(lab), g, np.int64))
        split += [sp] * len(lab)
        n_bumps += vid["n_bumps"]
        per_patient.append({"split": sp, "has_polyp": bool(has), "polyps": len(vid["polyps"]),
                            "candidates": int(len(lab)), "positives": int(lab.sum())})
        if progress is not None:
            progress(g + 1, len(pats))
    patches = np.concatenate(chunks)
    labels = np.concatenate(labels)
    groups = np.concatenate(groups)
    split = np.array(split)
    counts = {}
    for sp in ("train", "val", "test"):
        sel = split == sp
        pp = [p for p in per_patient if p["split"] == sp]
        counts[sp] = {"candidates": int(sel.sum()), "polyp_candidates": int(labels[sel].sum()),
                      "patients": len(pp), "patients_with_polyps": sum(p["has_polyp"] for p in pp)}
    attrs = {
        "group_kind": "patient",
        "candidate_kind": "detector box",
        "n_candidates": int(len(labels)), "m": int(patches.shape[1]), "patch_size": P,
        "frame_size": int(cfg["frame"]), "scene_size": int(cfg["scene"]), "frames_per_patient": int(cfg["frames"]),
        "n_patients": len(pats), "counts": counts, "per_patient": per_patient,
        "positive_fraction": float(labels.mean()),
        "generator_sensitivity": {
            "polyp_frames": float(n_pf_hit / max(n_pf, 1)), "n_polyp_frames": int(n_pf),
            "polyps": float(n_pol_hit / max(n_pol, 1)), "n_polyps": int(n_pol),
            "definition": "fraction of frames with a polyp centre in view (resp. of polyps) with >= 1 candidate labelled as that polyp",
        },
        "generator": {"sigmas": list(DOG_SIGMAS), "threshold": DOG_THRESHOLD, "hit_tolerance": HIT_TOLERANCE, "k_max": int(cfg["k_max"]),
                      "p_random": float(cfg["p_random"])},
        "box_scales": list(BOX_SCALES), "transforms": [M.DIHEDRAL[i] for i in tr], "translation": 0.1,
        "difficulty": difficulty, "benign_bumps": int(n_bumps),
        "generation_seconds": round(time.time() - t0, 2),
    }
    return {"patches": patches, "labels": labels, "groups": groups, "split": split,
            "class_names": list(CLASS_NAMES), "attrs": attrs}


def render_examples(path, seed=0, *, n_per_class=3):
    """Write a PNG: two full frames with boxed candidates, then candidates of each class with
    several of their patches (matplotlib, Agg)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    cfg = dict(CONFIGS["quick"])
    root = np.random.SeedSequence(int(seed))
    seeds = root.spawn(len(cfg["patients"]))
    g = next(i for i, (_, has) in enumerate(cfg["patients"]) if has)
    vid = render_patient(seeds[g], cfg, True)
    crng = np.random.default_rng(seeds[g].spawn(1)[0])
    cand = candidate_generator(vid["frames"], crng, k_max=cfg["k_max"], p_random=cfg["p_random"])
    lab = label_candidates(vid["mask"], cand) > 0
    pt = candidate_patches(crng, vid["frames"], cand, cfg["patch"], cfg["transforms"])
    rng = np.random.default_rng(seed)
    pos_frames = np.unique(cand["t"][lab])
    neg_only = np.setdiff1d(np.arange(len(vid["frames"])), pos_frames)
    show = [int(rng.choice(pos_frames)) if len(pos_frames) else 0, int(rng.choice(neg_only)) if len(neg_only) else 1]
    rows = []
    for cls in (1, 0):
        idx = np.nonzero(lab == bool(cls))[0]
        rows += [(cls, int(i)) for i in rng.choice(idx, min(n_per_class, len(idx)), replace=False)]
    m = pt.shape[1]
    ncol = 8
    cols = np.linspace(0, m - 1, ncol).round().astype(int)
    fig = plt.figure(figsize=(1.4 * ncol, 1.5 * len(rows) + 3.6))
    gs = fig.add_gridspec(len(rows) + 2, ncol)
    for k, t in enumerate(show):
        ax = fig.add_subplot(gs[0:2, 4 * k:4 * k + 3])
        ax.imshow(vid["frames"][t])
        for i in np.nonzero(cand["t"] == t)[0]:
            s = cand["side"][i]
            col = "lime" if lab[i] else ("cyan" if cand["random"][i] else "yellow")
            ax.add_patch(Rectangle((cand["cx"][i] - s / 2, cand["cy"][i] - s / 2), s, s, fill=False, ec=col, lw=1.2))
        ax.set_title(f"frame {t}: green = polyp, yellow = detector, cyan = random", fontsize=8)
        ax.axis("off")
    combos = [(s, M.DIHEDRAL[d]) for s in BOX_SCALES for d in cfg["transforms"]]
    for r, (cls, i) in enumerate(rows):
        for c, j in enumerate(cols):
            ax = fig.add_subplot(gs[2 + r, c])
            ax.imshow(pt[i, j])
            ax.axis("off")
            title = f"x{combos[j][0]} {combos[j][1]}"
            if c == 0:
                title = f"{CLASS_NAMES[cls]} #{i}\n" + title
            ax.set_title(title, fontsize=6)
    fig.suptitle("polyp-detection (quick): frames with candidate boxes; candidates with patches "
                 "(scale x transform, +-10% shift)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
