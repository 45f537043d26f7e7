"""Simulated pulmonary embolism (PE) detection in CT pulmonary angiography.

A faithful stand-in for the private PE data of Zhou et al. (AIFT, CVPR 2017; ACFT 2021): 3-D
synthetic CTPA volumes (Hounsfield-like intensities) with a branching, tapering tree of
contrast-filled pulmonary arteries, a less-enhanced venous tree, dark emboli inside the
arteries (the truth) and look-alikes (lymph nodes at bifurcations and beside arteries,
low-enhancement flow stretches, bifurcation crotches, artery-vein contacts, noise). A candidate
generator that never looks at the truth (dark-inside-bright voxels + tobogganing) proposes
candidates; each is represented by m augmented 2.5-D patches (axial / coronal / sagittal planes
through the candidate as the 3 channels, random rotation, scale and translation).

The generative model lives in :mod:`simulate.apps._volume`; the data sheet is
``data/apps/pulmonary-embolism.md``. Volumes are generated from per-volume child seeds
(``SeedSequence([seed, volume_index])``), so any volume can be regenerated on its own and the
``quick`` volumes are the first volumes of ``paper`` (same ``seed`` and ``difficulty``).
"""

from __future__ import annotations

import time

import numpy as np

from aift_tf.errors import AiftError
from simulate.apps import _volume as V
from simulate.apps import scale_config

NAME = "pulmonary-embolism"
DESCRIPTION = ("Pulmonary embolism candidates in synthetic 3-D CTPA volumes: 2.5-D patches, "
               "tobogganing candidate generator, split by volume (patient)")
SCALES = ("quick", "paper")
CLASS_NAMES = ["non-PE", "PE"]

# Scales. "tiny" is for tests only (not in the registry).
CONFIGS = {
    "tiny": dict(volumes=(3, 1, 2), patch_size=16, m=2),
    "quick": dict(volumes=(17, 3, 10), patch_size=32, m=8),
    "paper": dict(volumes=(67, 8, 46), patch_size=64, m=24),
}
PATCH_DEFAULTS = dict(
    fov=20.0,                   # voxels spanned by a patch at scale 1.0
    scales=(1.0, 1.2, 1.5),     # field-of-view scales
    max_shift=0.1,              # translation: +-10 % of the field of view along each axis
    hu_window=(-100.0, 500.0),  # HU -> [0, 255]
)
SOURCES = ("embolus", "lymph-node", "low-enhancement", "other")
# Bumped whenever the generated data change for the same (scale, seed): stores cached under the
# old version are stale (simulate.app_check regenerates them). 2: constant (air) fill outside the
# block instead of mirroring; explicit truth rule. 3: CTPA-like resolution (72x96x96 grid, vessel
# radii x1.5 so segmental arteries are >= 5-6 voxels across), emboli only in arteries of radius
# >= 3 voxels, partial clots narrower than the lumen (contrast rim) or complete occlusions,
# low-enhancement look-alikes on all vessel sizes, detector lengths rescaled.
GENERATOR_VERSION = 3


def _config(scale, difficulty, volume_overrides, patch_overrides):
    cfg = scale_config(NAME, CONFIGS, scale, PATCH_DEFAULTS)
    for k, v in (patch_overrides or {}).items():
        if k not in cfg:
            raise AiftError(f"unknown {NAME} option {k!r}")
        cfg[k] = v
    try:
        vp = V.volume_params(difficulty, **(volume_overrides or {}))
    except ValueError as e:
        raise AiftError(str(e)) from None
    return cfg, vp


def simulate_volume(index, seed, vp, cfg, keep_volume=False):
    """Volume ``index`` of the data set with ``seed``: synthesis, candidates, truth, patches.

    Returns a dict with ``patches`` (k, m, S, S, 3) uint8, ``labels`` (k,), ``centres`` (k, 3),
    ``sources`` (k,) codes into :data:`SOURCES`, ``hit`` (per-embolus bool), ``info`` and, with
    ``keep_volume``, the volume dict of :func:`simulate.apps._volume.synthesize_volume`.
    """
    ss = np.random.SeedSequence([int(seed), int(index)])
    vol_seed, aug_seed = ss.spawn(2)
    vol = V.synthesize_volume(vol_seed, vp)
    centres, clusters = V.detect_candidates(vol["image"], vp)
    labels, hit, sources = V.label_candidates(clusters, vol["emboli"], vol["nodes"], vol["lowflow"],
                                              min_fraction=vp["truth_min_fraction"], rule=vp["truth_rule"],
                                              centres=centres)
    rng = np.random.default_rng(aug_seed)
    # the library cutter (aift_tf.volumes); plain_first=False keeps generator version 3's data
    # byte-identical: here every patch, patch 0 included, is augmented
    angle, scale, shift = V.augmentation_params(rng, len(centres), cfg["m"], cfg["scales"], cfg["max_shift"],
                                                plain_first=False)
    patches = V.extract_patches(vol["image"], centres, angle, scale, shift, cfg["patch_size"], cfg["fov"],
                                cfg["hu_window"], cval=vp["air_hu"])
    out = dict(patches=patches, labels=labels, centres=centres, sources=sources, hit=hit, info=vol["info"])
    if keep_volume:
        out["volume"] = vol
        out["clusters"] = clusters
    return out


def generate(scale="quick", seed=0, progress=None, difficulty=0.5, volume_overrides=None, patch_overrides=None):
    """Generate the candidate set (see the module docstring and the data sheet).

    ``difficulty`` in [0, 1] (default 0.5) changes appearance only: noise, embolus contrast and
    size, how dark the low-enhancement look-alikes get. ``volume_overrides`` /
    ``patch_overrides`` override single parameters (names as in the returned ``attrs``).
    """
    cfg, vp = _config(scale, difficulty, volume_overrides, patch_overrides)
    n_tr, n_va, n_te = cfg["volumes"]
    n_vol = n_tr + n_va + n_te
    # split by volume (patient): a seeded permutation of the volume indices
    perm = np.random.default_rng(np.random.SeedSequence([int(seed), 2**31 - 1])).permutation(n_vol)
    vol_split = np.empty(n_vol, dtype=object)
    vol_split[perm[:n_tr]] = "train"
    vol_split[perm[n_tr:n_tr + n_va]] = "val"
    vol_split[perm[n_tr + n_va:]] = "test"

    t0 = time.time()
    parts = []
    for i in range(n_vol):
        parts.append(simulate_volume(i, seed, vp, cfg))
        if progress is not None:
            progress(i + 1, n_vol)
    counts = np.array([len(r["labels"]) for r in parts])
    n = int(counts.sum())
    S, m = cfg["patch_size"], cfg["m"]
    patches = np.zeros((n, m, S, S, 3), np.uint8)
    pos = 0
    for r in parts:
        patches[pos:pos + len(r["labels"])] = r["patches"]
        pos += len(r["labels"])
        r["patches"] = None
    labels = np.concatenate([r["labels"] for r in parts]).astype(np.int64)
    groups = np.repeat(np.arange(n_vol, dtype=np.int64), counts)
    split = np.repeat(vol_split, counts).astype(str)
    sources = np.concatenate([r["sources"] for r in parts]).astype(np.int64)
    centres = np.concatenate([r["centres"] for r in parts]).reshape(-1, 3)

    per_split = {}
    for sp in ("train", "val", "test"):
        vids = np.flatnonzero(vol_split == sp)
        sel = split == sp
        emb = int(sum(len(parts[v]["hit"]) for v in vids))
        hits = int(sum(int(parts[v]["hit"].sum()) for v in vids))
        per_split[sp] = dict(
            volumes=int(len(vids)), emboli=emb, emboli_hit=hits,
            generator_sensitivity=(hits / emb) if emb else None,
            candidates=int(sel.sum()), positives=int(labels[sel].sum()), negatives=int((labels[sel] == 0).sum()))
    emb_all = sum(s["emboli"] for s in per_split.values())
    hit_all = sum(s["emboli_hit"] for s in per_split.values())
    attrs = dict(
        group_kind="volume",
        generator_version=GENERATOR_VERSION,
        truth_rule=dict(rule=vp["truth_rule"], min_fraction=vp["truth_min_fraction"], dilation_voxels=1),
        num_volumes=n_vol,
        num_emboli=emb_all,
        num_emboli_per_split={k: v["emboli"] for k, v in per_split.items()},
        generator_sensitivity=(hit_all / emb_all) if emb_all else None,
        per_split=per_split,
        positive_fraction=float(labels.mean()) if n else 0.0,
        candidate_sources={name: int((sources == c).sum()) for c, name in enumerate(SOURCES)},
        patch_size=S, m=m, channels=["axial", "coronal", "sagittal"],
        hu_window=list(cfg["hu_window"]), fov_voxels=cfg["fov"], fov_scales=list(cfg["scales"]),
        max_shift=cfg["max_shift"], difficulty=float(difficulty),
        volume_params=vp,
        generation_seconds=round(time.time() - t0, 2),
    )
    meta = dict(volume=groups.copy(), centre=centres, source=sources)
    return dict(patches=patches, labels=labels, groups=groups, split=split, class_names=list(CLASS_NAMES),
                attrs=attrs, meta=meta)


def render_examples(path="data/apps/pulmonary-embolism-examples.png", seed=0, difficulty=0.5, n_volumes=8,
                    n_show=4, n_aug=4):
    """Regenerate the example figure: one axial slice with vessels / emboli / candidates, and
    ``n_show`` positive and negative candidates with ``n_aug`` of their augmentations
    (each shown as its three planes side by side). Uses the quick patch settings.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg, vp = _config("quick", difficulty, None, None)
    res = [simulate_volume(i, seed, vp, cfg, keep_volume=(i == 0)) for i in range(n_volumes)]
    v0 = res[0]
    vol = v0["volume"]
    # the axial slice holding the most embolus voxels (else the middle one)
    emb_per_z = (vol["emboli"] > 0).sum(axis=(1, 2))
    z = int(np.argmax(emb_per_z)) if emb_per_z.max() > 0 else vol["image"].shape[0] // 2
    patches = np.concatenate([r["patches"] for r in res])
    labels = np.concatenate([r["labels"] for r in res])
    sources = np.concatenate([r["sources"] for r in res])
    rng = np.random.default_rng(seed)
    pos_ids = rng.permutation(np.flatnonzero(labels == 1))[:n_show]
    neg_ids = []
    for code in (1, 2, 3, 3):  # one or two of each kind of negative
        cand = np.setdiff1d(np.flatnonzero(sources == code), neg_ids)
        if len(cand):
            neg_ids.append(int(rng.choice(cand)))
    neg_ids = np.array(neg_ids[:n_show], dtype=int)

    rows = len(pos_ids) + len(neg_ids)
    fig = plt.figure(figsize=(3 * n_aug + 6, 1.25 * rows + 0.6))
    gs = fig.add_gridspec(rows, n_aug + 2, width_ratios=[4] + [0.15] + [3] * n_aug, wspace=0.08, hspace=0.25)
    ax0 = fig.add_subplot(gs[:, 0])
    ax0.imshow(vol["image"][z], cmap="gray", vmin=-1000, vmax=500)
    if (vol["emboli"][z] > 0).any():
        ax0.contour(vol["emboli"][z] > 0, levels=[0.5], colors="red", linewidths=1.0)
    near = np.abs(v0["centres"][:, 0] - z) <= 1.5
    for c, lab in zip(v0["centres"][near], v0["labels"][near]):
        ax0.plot(c[2], c[1], marker="o", mfc="none", ms=7, mec="lime" if lab else "orange", mew=1.0)
    ax0.set_title(f"volume 0, axial slice z={z} (HU -1000..500)\nred: emboli, circles: candidates "
                  "(green PE / orange non-PE)", fontsize=8)
    ax0.axis("off")
    for r, cid in enumerate(list(pos_ids) + list(neg_ids)):
        for j in range(n_aug):
            ax = fig.add_subplot(gs[r, j + 2])
            ax.imshow(np.concatenate(list(np.moveaxis(patches[cid, j], -1, 0)), axis=1), cmap="gray", vmin=0,
                      vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(f"{'PE' if labels[cid] else 'non-PE'}\n{SOURCES[sources[cid]]}", fontsize=7)
            if r == 0:
                ax.set_title(f"augmentation {j + 1}: axial | coronal | sagittal", fontsize=7)
    fig.suptitle("Simulated pulmonary embolism candidates (2.5-D patches, window [-100, 500] HU)", fontsize=10)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
