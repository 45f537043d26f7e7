"""Simulated polyp detection in colonoscopy videos: candidates from a blob detector, polyp vs background.

Stand-in for the private data of Zhou et al. (CVPR 2017), application "polyp detection": 38
patients with one video each (21 train, 11 of them with polyps; 17 test, 8 with polyps); a
candidate generator yields ~16,300 train / ~11,950 test candidates, about 1 true polyp in 10; 24
patches per candidate = 3 box scales {1.0, 1.2, 1.5} x 8 flips/rotations, with +-10 % translations.

Generative model, per patient (:mod:`._mucosa` does the surface and camera):

* one rendered mucosal scene per patient and a smooth camera drift over it (frames are temporally
  correlated; the same polyp moves smoothly through consecutive frames and leaves the view);
* patients "with polyps" get 1 (or, with probability 0.25, 2) polyps: protruding rounded blobs with
  an irregular outline (radius 6-15 px at the 96-px frame), a colour tint (contrast drawn in
  [0.25, 1] * 0.4 / (0.5 + 0.5 * difficulty)) and a fine pit-pattern texture; being raised they are shaded by the
  scope light (highlight on one side, shadow on the other, a specular glint on top);
* every patient gets benign mucosal bumps (same colour as the mucosa, little texture; their number
  grows with ``difficulty``) and temporal runs of bubbles / glare / motion blur / defocus, so the
  candidate generator also fires on folds, bumps, glints, glare and bubbles;
* the **candidate generator** sees frames only (never the truth): multi-scale Difference-of-Gaussian
  peaks of the frame intensity (bright and dark blobs) and redness (4 scales, non-maximum suppression, at most
  ``k_max`` per frame above a threshold) plus a few random proposals. Box side = 2*sqrt(2)*2*sigma.
  A candidate is a polyp iff its box centre lies inside a polyp (rendered polyp mask);
* patches: box scales {1.0, 1.2, 1.5} x a subset of the 8 dihedral transforms (quick: 4 = identity,
  rot90, flip, flip+rot180 -> m = 12; paper: all 8 -> m = 24), each with an independent random
  translation of up to +-10 % of the box side (so a few patches lose a small polyp).

``groups`` = patient id; the split is by patient. ``attrs["generator_sensitivity"]`` reports the
fraction of polyp frames (polyp centre in view) and of polyps with >= 1 true candidate.
"""

from __future__ import annotations

import time

import numpy as np
from scipy import ndimage as ndi

from aift_tf.errors import AiftError
from simulate.apps import _mucosa as M

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
    "quick": dict(patients=_patients(6, 4, 2, 1, 4, 3), frames=30, frame=96, scene=320, patch=32,
                  transforms=(0, 1, 4, 6), k_max=4, p_random=0.3),
    "paper": dict(patients=_patients(21, 11, 2, 1, 17, 8), frames=120, frame=96, scene=320, patch=32,
                  transforms=(0, 1, 2, 3, 4, 5, 6, 7), k_max=4, p_random=0.3),
}
DOG_SIGMAS = (2.0, 3.0, 4.5, 6.75)    # at the 96-px frame
DOG_THRESHOLD = 0.02


def _difficulty(d):
    d = float(d)
    if not 0.0 <= d <= 2.0:
        raise AiftError(f"difficulty {d!r} must be in [0, 2]")
    return d


def render_patient(seed_seq, cfg, has_polyp, difficulty=1.0):
    """Render one patient's video; returns frames (T, F, F, 3), mask (T, F, F) polyp id (0 = none),
    polyp specs and the camera path."""
    rng = np.random.default_rng(seed_seq)
    F, S, T = int(cfg["frame"]), int(cfg["scene"]), int(cfg["frames"])
    u = F / 96.0
    scene = M.make_scene(rng, S)
    scene["mask"] = np.zeros_like(scene["height"])
    path = M.camera_path(rng, T, S, F)
    # benign bumps (hard negatives), uniformly over the scene
    n_bumps = rng.poisson(6.0 * difficulty * (S / 320.0) ** 2)
    for _ in range(n_bumps):
        r = rng.uniform(3.0, 8.0) * u
        M.add_bump(scene, rng, rng.uniform(0, S), rng.uniform(0, S), r, height=rng.uniform(0.25, 0.45) * r,
                   color=1 + rng.uniform(-0.04, 0.04, 3), texture=0.03, irregular=0.1)
    polyps = []
    if has_polyp:
        n_pol = 1 + int(rng.random() < 0.25)
        cmax = 0.4 / (0.5 + 0.5 * difficulty)
        for j in range(n_pol):
            t0 = int(rng.integers(int(0.15 * T), int(0.85 * T) + 1))
            off = rng.uniform(-0.25, 0.25, 2) * F
            y, x = M.frame_to_scene(path, F, t0, F / 2 + off[0], F / 2 + off[1])
            r = rng.uniform(6.0, 15.0) * u
            c = rng.uniform(0.25 * cmax, cmax)
            # redder/darker or paler tint
            tint = np.array([1 + 0.3 * c, 1 - c, 1 - c]) if rng.random() < 0.6 else np.array([1 + 0.1 * c, 1 + 0.6 * c, 1 + 0.6 * c])
            M.add_bump(scene, rng, y, x, r, height=rng.uniform(0.5, 0.8) * r, color=tint,
                       texture=rng.uniform(0.06, 0.2), irregular=rng.uniform(0.08, 0.25), mask_value=j + 1)
            polyps.append({"y": float(y), "x": float(x), "radius": float(r), "contrast": float(c)})
    out = M.render_frames(scene, path, F, rng, specular=0.4)
    frames, mask = out["frames"], np.rint(out["mask"]).astype(np.int64)
    ep = M.episodes(rng, T, 0.3, mean_bad=6.0, kinds=("blur", "motion", "bubbles", "glare"),
                    sev_bad=(0.15, 0.5), sev_clean=(0.0, 0.2), p_nuisance=0.5)
    M.degrade(frames, ep["kind"], ep["severity"], rng, kinds=("blur", "motion", "bubbles", "glare"))
    # polyp centre visibility per frame
    vis = np.zeros((T, len(polyps)), bool)
    for j, p in enumerate(polyps):
        fy, fx = M.scene_to_frame(path, F, np.arange(T), p["y"], p["x"])
        vis[:, j] = (fy >= 0) & (fy <= F - 1) & (fx >= 0) & (fx <= F - 1)
    return {"frames": frames, "mask": mask, "polyps": polyps, "visible": vis, "path": path,
            "n_bumps": int(n_bumps)}


def candidate_generator(frames, rng, *, k_max=5, p_random=0.4, threshold=DOG_THRESHOLD):
    """Truth-free candidate generator on frames (T, F, F, 3) in [0, 1].

    Multi-scale DoG of intensity (bright and dark blobs) and of redness (R - G); 3-D (scale, y, x) local maxima; scale-normalised response above
    ``threshold``; greedy non-maximum suppression (centres closer than half the larger box are
    merged); at most ``k_max`` per frame; plus Poisson(``p_random``) random proposals per frame.
    Returns arrays t, cy, cx, side, score, random (bool).
    """
    T, F = frames.shape[:2]
    u = F / 96.0
    I = frames.mean(-1)
    red = frames[..., 0] - frames[..., 1]
    sig = np.array(DOG_SIGMAS) * u

    def dog(img):
        return np.stack([ndi.gaussian_filter(img, (0, s, s)) - ndi.gaussian_filter(img, (0, 1.6 * s, 1.6 * s))
                         for s in sig], 1)                                  # (T, K, F, F)

    DI = dog(I)
    D = np.maximum(np.abs(DI), dog(red))      # bright or dark blobs of intensity, or redder blobs
    mx = ndi.maximum_filter(D, size=(1, 3, 5, 5), mode="nearest")
    b = int(round(3 * u))
    peak = (D == mx) & (D > threshold)
    peak[..., :b, :] = False
    peak[..., -b:, :] = False
    peak[..., :, :b] = False
    peak[..., :, -b:] = False
    tt, kk, yy, xx = np.nonzero(peak)
    score = D[tt, kk, yy, xx]
    side = np.maximum(2 * np.sqrt(2) * 2 * sig[kk], 12 * u)
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
            ok = True
            for j in keep:
                if np.hypot(yy[i] - yy[j], xx[i] - xx[j]) < 0.5 * max(side[i], side[j]):
                    ok = False
                    break
            if ok:
                keep.append(i)
        for i in keep:
            out_t.append(t); out_y.append(yy[i]); out_x.append(xx[i]); out_s.append(side[i])
            out_sc.append(score[i]); out_r.append(False)
        for _ in range(rng.poisson(p_random)):
            s = rng.uniform(12, 40) * u
            out_t.append(t); out_y.append(rng.uniform(s / 2, F - s / 2)); out_x.append(rng.uniform(s / 2, F - s / 2))
            out_s.append(s); out_sc.append(0.0); out_r.append(True)
    return {"t": np.array(out_t, np.int64), "cy": np.array(out_y, np.float64), "cx": np.array(out_x, np.float64),
            "side": np.array(out_s, np.float64), "score": np.array(out_sc, np.float64),
            "random": np.array(out_r, bool)}


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
    if scale not in CONFIGS:
        raise AiftError(f"unknown scale {scale!r}; valid scales: {', '.join(CONFIGS)}")
    difficulty = _difficulty(difficulty)
    cfg = dict(CONFIGS[scale])
    if config:
        cfg.update(config)
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
        F = vid["frames"].shape[1]
        iy = np.clip(np.rint(cand["cy"]).astype(int), 0, F - 1)
        ix = np.clip(np.rint(cand["cx"]).astype(int), 0, F - 1)
        hit_id = vid["mask"][cand["t"], iy, ix]
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
            "definition": "fraction of frames with a polyp centre in view (resp. of polyps) with >= 1 candidate centre inside the polyp",
        },
        "generator": {"dog_sigmas": list(DOG_SIGMAS), "threshold": DOG_THRESHOLD, "k_max": int(cfg["k_max"]),
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
    F = vid["frames"].shape[1]
    lab = vid["mask"][cand["t"], np.clip(np.rint(cand["cy"]).astype(int), 0, F - 1),
                      np.clip(np.rint(cand["cx"]).astype(int), 0, F - 1)] > 0
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
        ax.set_title(f"frame {t}: green = polyp, yellow = DoG, cyan = random", fontsize=8)
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
