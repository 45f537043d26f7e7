"""Tests of the simulated polyp-detection app (tiny internal config)."""

import numpy as np
import pytest

from simulate.apps import polyp_detection as PD

TINY = dict(patients=[("train", True), ("train", False), ("test", True)], frames=14, frame=96, scene=256,
            patch=16, transforms=(0, 4), k_max=6, p_random=0.2)


@pytest.fixture(scope="module")
def tiny():
    return PD.generate(seed=1, config=TINY)


def test_contract_shapes_dtypes(tiny):
    d = tiny
    n = len(d["labels"])
    assert n > 50
    assert d["patches"].shape == (n, 6, 16, 16, 3) and d["patches"].dtype == np.uint8
    assert d["groups"].shape == (n,) and d["split"].shape == (n,)
    assert d["class_names"] == ["background", "polyp"]
    a = d["attrs"]
    assert a["group_kind"] == "patient" and a["m"] == 6
    assert PD.NAME == "polyp-detection"


def test_deterministic_per_seed(tiny):
    d2 = PD.generate(seed=1, config=TINY)
    assert np.array_equal(tiny["patches"], d2["patches"]) and np.array_equal(tiny["labels"], d2["labels"])


def test_split_by_patient(tiny):
    for g in np.unique(tiny["groups"]):
        assert len(np.unique(tiny["split"][tiny["groups"] == g])) == 1
    # the patient without polyps yields no positives
    assert tiny["labels"][tiny["groups"] == 1].sum() == 0


def test_class_ratio_plausible(tiny):
    frac = tiny["labels"].mean()
    assert 0.02 < frac < 0.3        # target ~ 1 in 10 overall


def test_generator_sensitivity(tiny):
    s = tiny["attrs"]["generator_sensitivity"]
    assert s["n_polyps"] >= 2
    assert s["polyps"] >= 0.5
    assert 0.4 <= s["polyp_frames"] <= 1.0


def test_generator_fires_without_truth():
    """The generator sees frames only and fires on non-polyp structures too."""
    ss = np.random.SeedSequence(2).spawn(1)[0]
    v = PD.render_patient(ss, dict(TINY), has_polyp=False)
    cand = PD.candidate_generator(v["frames"], np.random.default_rng(0), k_max=6, p_random=0.0)
    assert len(cand["t"]) >= 2 * len(v["frames"])
    assert v["mask"].max() == 0


def test_patch_scales_and_translation():
    rng = np.random.default_rng(0)
    frames = np.zeros((1, 64, 64, 3), np.float32)
    frames[0, 28:36, 28:36] = 1.0                       # an 8-px bright square
    cand = {"t": np.array([0]), "cy": np.array([31.5]), "cx": np.array([31.5]), "side": np.array([16.0])}
    p = PD.candidate_patches(rng, frames, cand, 16, (0,))
    area = (p[0].mean(-1) > 0.5).mean((1, 2))          # bright fraction shrinks with box scale
    assert area[0] > area[1] > area[2] > 0


def test_quick_config_and_val_has_polyps():
    for scale, m in (("quick", 12), ("paper", 24)):
        cfg = PD.CONFIGS[scale]
        assert 3 * len(cfg["transforms"]) == m
        assert sum(has for sp, has in cfg["patients"] if sp == "val") >= 2     # enough val positives
        assert {sp for sp, _ in cfg["patients"]} == {"train", "val", "test"}
    paper = PD.CONFIGS["paper"]["patients"]
    assert sum(sp == "train" for sp, _ in paper) == 21 and sum(h for sp, h in paper if sp == "train") == 11
    assert sum(sp == "test" for sp, _ in paper) == 17 and sum(h for sp, h in paper if sp == "test") == 8


def test_polyp_is_raised_same_tissue():
    """A polyp is a bump of the mucosa: raised, and its albedo near the mucosa colour (not dark)."""
    from simulate.apps import _mucosa as M
    for kind in PD.POLYP_KINDS:
        rng = np.random.default_rng(3)
        scene = M.make_scene(rng, 128)
        h0, a0 = scene["height"].copy(), scene["albedo"].copy()
        PD.add_polyp(scene, rng, 64.0, 64.0, 12.0, kind=kind, contrast=0.5, mask_value=1)
        inside = scene["mask"] == 1
        assert 100 < inside.sum() < 128 * 128 // 4
        assert (scene["height"] - h0)[inside].mean() > 0.5
        ratio = scene["albedo"][inside].mean(0) / a0[inside].mean(0)
        assert np.all(ratio > 0.85) and np.all(ratio < 1.4), (kind, ratio)


def test_label_tolerance():
    mask = np.zeros((1, 40, 40), np.int64)
    mask[0, 15:25, 15:25] = 2
    cand = {"t": np.array([0, 0, 0]), "cy": np.array([20.0, 20.0, 20.0]), "cx": np.array([20.0, 27.0, 35.0]),
            "side": np.array([24.0, 24.0, 24.0])}
    assert PD.label_candidates(mask, cand).tolist() == [2, 2, 0]     # inside, 3 px off (<= 0.125*24), far
