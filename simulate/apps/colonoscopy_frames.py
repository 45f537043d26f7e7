"""Simulated colonoscopy frame classification: informative vs non-informative frames.

Stand-in for the private data of Zhou et al. (CVPR 2017, "Fine-tuning CNNs for biomedical image
analysis: actively and incrementally"), application "colonoscopy frame classification": 6 videos,
4,000 frames split by video into ~2,000 train / ~2,000 test, 21 patches per frame, informative :
non-informative ~ 3 : 7.

Each video is a smooth camera drift over its own rendered mucosal scene (:mod:`._mucosa`). Frames
are *non-informative* (label 0) inside temporal runs of a degradation (out-of-focus blur, motion
blur, bubbles, wall contact, specular glare) whose severity lies in ``[0.5 - 0.2*d, 1]``;
*informative* frames (label 1) lie in clean runs, which may still carry a mild nuisance
degradation of severity ``[0, 0.1 + 0.15*d]`` (a few glints, a little blur ...), where ``d`` is the
``difficulty`` parameter (default 1; 0 = separable severities, larger = more overlap). Bubbles and
glare are local, so a crop can miss them: patches of one frame disagree, as in the paper.

A frame is one candidate; its ``m`` patches are random square crops (side 45–80 % of the frame,
random translation inside the frame, random one of the 8 flips/rotations) resampled to the patch
size, deterministic per seed. ``groups`` = video id; the split is by video.
"""

from __future__ import annotations

import time

import numpy as np

from aift_tf.errors import AiftError
from simulate.apps import _mucosa as M
from simulate.apps import scale_config

NAME = "colonoscopy-frames"
DESCRIPTION = ("Colonoscopy frame classification (informative vs non-informative: blur, motion, "
               "bubbles, wall contact, glare); frames of simulated videos, split by video")
SCALES = ("quick", "paper")
CLASS_NAMES = ["non-informative", "informative"]

# videos: list of (split, n_frames). The val video is an addition to the paper's 6 videos.
CONFIGS = {
    "quick": dict(videos=[("train", 180), ("train", 220), ("train", 200), ("val", 100),
                          ("test", 210), ("test", 190), ("test", 200)],
                  frame=64, patch=32, m=10, scene=256),
    "paper": dict(videos=[("train", 620), ("train", 700), ("train", 680), ("val", 300),
                          ("test", 650), ("test", 720), ("test", 630)],
                  frame=96, patch=48, m=21, scene=384),
}
P_NONINFORMATIVE = 0.7      # paper: informative : non-informative ~ 3 : 7
MEAN_BAD_RUN = 24.0         # mean length (frames) of a degradation episode
CROP_FRACTION = (0.45, 0.80)


def _severity_ranges(difficulty):
    d = float(difficulty)
    if not 0.0 <= d <= 2.0:
        raise AiftError(f"difficulty {difficulty!r} must be in [0, 2]")
    return (max(0.05, 0.5 - 0.2 * d), 1.0), (0.0, 0.1 + 0.15 * d)


def render_video(seed_seq, n_frames, cfg, difficulty=1.0):
    """Render one video: returns dict frames (T, F, F, 3) float32, labels (T,), kind, severity."""
    rng = np.random.default_rng(seed_seq)
    sev_bad, sev_clean = _severity_ranges(difficulty)
    scene = M.make_scene(rng, cfg["scene"])
    path = M.camera_path(rng, n_frames, cfg["scene"], cfg["frame"])
    frames = M.render_frames(scene, path, cfg["frame"], rng)["frames"]
    ep = M.episodes(rng, n_frames, P_NONINFORMATIVE, mean_bad=MEAN_BAD_RUN,
                    sev_bad=sev_bad, sev_clean=sev_clean)
    M.degrade(frames, ep["kind"], ep["severity"], rng)
    return {"frames": frames, "labels": (~ep["bad"]).astype(np.int64), "kind": ep["kind"],
            "severity": ep["severity"], "path": path}


def frame_patches(rng, frames, m, patch):
    """``m`` random crops per frame: (T, m, P, P, 3) float32 plus the crop parameters."""
    T, F = frames.shape[0], frames.shape[1]
    side = F * rng.uniform(*CROP_FRACTION, size=(T, m))
    cy = rng.uniform(side / 2 - 0.5, F - side / 2 - 0.5)
    cx = rng.uniform(side / 2 - 0.5, F - side / 2 - 0.5)
    dih = rng.integers(0, 8, size=(T, m))
    t = np.broadcast_to(np.arange(T)[:, None], (T, m))
    return M.crop_patches(frames, t, cy, cx, side, dih, patch)


def generate(scale="quick", seed=0, progress=None, *, difficulty=1.0, config=None):
    """Generate the application. ``config`` (dict) overrides entries of ``CONFIGS[scale]``
    (tests use a tiny one). Returns the app-contract dict: ``patches, labels, groups, split,
    class_names, attrs``."""
    cfg = scale_config(NAME, CONFIGS, scale, config)
    t0 = time.time()
    videos = cfg["videos"]
    root = np.random.SeedSequence(int(seed))
    vid_seeds = root.spawn(len(videos))
    n = sum(nf for _, nf in videos)
    m, P = int(cfg["m"]), int(cfg["patch"])
    patches = np.empty((n, m, P, P, 3), np.uint8)
    labels = np.empty(n, np.int64)
    groups = np.empty(n, np.int64)
    split = []
    kinds = np.empty(n, np.int64)
    i = 0
    for v, ((sp, nf), ss) in enumerate(zip(videos, vid_seeds)):
        vid = render_video(ss, nf, cfg, difficulty)
        prng = np.random.default_rng(ss.spawn(1)[0])
        patches[i:i + nf] = M.to_uint8(frame_patches(prng, vid["frames"], m, P))
        labels[i:i + nf] = vid["labels"]
        groups[i:i + nf] = v
        kinds[i:i + nf] = vid["kind"]
        split += [sp] * nf
        i += nf
        if progress is not None:
            progress(v + 1, len(videos))
    split = np.array(split)
    counts = {}
    for sp in ("train", "val", "test"):
        sel = split == sp
        counts[sp] = {"frames": int(sel.sum()), "informative": int(labels[sel].sum()),
                      "videos": int(len(np.unique(groups[sel])))}
    bad = labels == 0
    attrs = {
        "group_kind": "video",
        "candidate_kind": "frame",
        "n_candidates": int(n), "m": m, "patch_size": P, "frame_size": int(cfg["frame"]),
        "scene_size": int(cfg["scene"]), "n_videos": len(videos),
        "video_frames": [int(nf) for _, nf in videos], "video_split": [sp for sp, _ in videos],
        "counts": counts,
        "informative_fraction": float(labels.mean()),
        "degradation_frames": {k: int(((kinds == j) & bad).sum()) for j, k in enumerate(M.DEGRADATIONS)},
        "nuisance_frames_informative": int(((kinds >= 0) & ~bad).sum()),
        "difficulty": float(difficulty),
        "severity_noninformative": list(_severity_ranges(difficulty)[0]),
        "severity_nuisance_informative": list(_severity_ranges(difficulty)[1]),
        "p_noninformative": P_NONINFORMATIVE, "mean_bad_run": MEAN_BAD_RUN,
        "crop_fraction": list(CROP_FRACTION), "transforms": "random dihedral (8) per patch",
        "generation_seconds": round(time.time() - t0, 2),
    }
    return {"patches": patches, "labels": labels, "groups": groups, "split": split,
            "class_names": list(CLASS_NAMES), "attrs": attrs}


def render_examples(path, seed=0, *, n_per_class=3, n_patches=6):
    """Write a PNG with example frames and patches per class (matplotlib, Agg)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = dict(CONFIGS["quick"])
    root = np.random.SeedSequence(int(seed))
    ss = root.spawn(len(cfg["videos"]))[0]
    vid = render_video(ss, cfg["videos"][0][1], cfg)
    prng = np.random.default_rng(ss.spawn(1)[0])
    pt = frame_patches(prng, vid["frames"], cfg["m"], cfg["patch"])
    rng = np.random.default_rng(seed)
    rows = []
    for lab in (1, 0):
        idx = np.nonzero(vid["labels"] == lab)[0]
        if lab == 0:   # one frame of each degradation kind present
            pick = []
            for k in range(len(M.DEGRADATIONS)):
                cand = idx[vid["kind"][idx] == k]
                if len(cand):
                    pick.append(int(rng.choice(cand)))
            idx = np.array(pick)
        else:
            idx = np.sort(rng.choice(idx, min(n_per_class, len(idx)), replace=False))
        rows += [(lab, int(t)) for t in idx]
    ncol = 1 + n_patches
    fig, axes = plt.subplots(len(rows) + 1, ncol, figsize=(1.5 * ncol, 1.6 * (len(rows) + 1)))
    for r, (lab, t) in enumerate(rows):
        k = vid["kind"][t]
        kind = M.DEGRADATIONS[k] if k >= 0 else "clean"
        axes[r, 0].imshow(vid["frames"][t])
        axes[r, 0].set_title(f"{CLASS_NAMES[lab]}\n{kind} s={vid['severity'][t]:.2f}", fontsize=7)
        for j in range(n_patches):
            axes[r, 1 + j].imshow(pt[t, j])
            axes[r, 1 + j].set_title(f"patch {j}", fontsize=7)
    # temporal strip: consecutive frames
    t0 = int(rng.integers(0, len(vid["labels"]) - 5 * ncol))
    for j in range(ncol):
        t = t0 + 5 * j
        axes[-1, j].imshow(vid["frames"][t])
        axes[-1, j].set_title(f"frame {t} ({'inf' if vid['labels'][t] else 'non'})", fontsize=7)
    for a in axes.ravel():
        a.axis("off")
    fig.suptitle("colonoscopy-frames (quick): frames and random patches; bottom: every 5th frame", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
