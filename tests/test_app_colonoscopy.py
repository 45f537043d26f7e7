"""Tests of the simulated colonoscopy frame-classification app (tiny internal config)."""

import numpy as np
import pytest

from simulate.apps import _mucosa as M
from simulate.apps import colonoscopy_frames as C

TINY = dict(videos=[("train", 60), ("val", 20), ("test", 60)], frame=48, patch=16, m=4, scene=160)


@pytest.fixture(scope="module")
def tiny():
    return C.generate(seed=3, config=TINY)


def test_contract_shapes_dtypes(tiny):
    d = tiny
    n = 140
    assert d["patches"].shape == (n, 4, 16, 16, 3) and d["patches"].dtype == np.uint8
    assert d["labels"].shape == (n,) and set(np.unique(d["labels"])) <= {0, 1}
    assert d["groups"].shape == (n,) and d["split"].shape == (n,)
    assert d["class_names"] == ["non-informative", "informative"]
    assert d["attrs"]["group_kind"] == "video"
    assert C.NAME == "colonoscopy-frames" and C.SCALES == ("quick", "paper")


def test_deterministic_per_seed(tiny):
    d2 = C.generate(seed=3, config=TINY)
    assert np.array_equal(tiny["patches"], d2["patches"])
    assert np.array_equal(tiny["labels"], d2["labels"])
    d3 = C.generate(seed=4, config=dict(TINY, videos=[("train", 20)]))
    assert not np.array_equal(d3["patches"], tiny["patches"][:20])


def test_split_by_video(tiny):
    for g in np.unique(tiny["groups"]):
        assert len(np.unique(tiny["split"][tiny["groups"] == g])) == 1
    assert set(tiny["split"]) == {"train", "val", "test"}


def test_class_ratio_plausible():
    d = C.generate(seed=0, config=dict(TINY, videos=[("train", 200), ("test", 200)], m=1))
    frac = d["labels"].mean()
    assert 0.15 < frac < 0.45          # target informative ~ 0.3


def test_temporal_correlation():
    cfg = dict(TINY)
    ss = np.random.SeedSequence(0).spawn(2)
    a = M.render_frames(M.make_scene(np.random.default_rng(ss[0]), 160),
                        M.camera_path(np.random.default_rng(1), 40, 160, 48), 48, np.random.default_rng(2))["frames"]
    b = M.render_frames(M.make_scene(np.random.default_rng(ss[1]), 160),
                        M.camera_path(np.random.default_rng(3), 40, 160, 48), 48, np.random.default_rng(4))["frames"]
    consecutive = np.mean([np.abs(a[t + 1] - a[t]).mean() for t in range(39)])
    across = np.mean([np.abs(a[t] - b[t]).mean() for t in range(40)])
    within_far = np.abs(a[0] - a[39]).mean()
    assert consecutive < 0.5 * across
    assert consecutive < within_far
    del cfg


def test_degradation_runs_are_temporal():
    ep = M.episodes(np.random.default_rng(0), 2000, 0.7, mean_bad=20.0)
    changes = np.count_nonzero(np.diff(ep["bad"].astype(int)))
    assert changes < 2000 / 8               # runs, not i.i.d. (i.i.d. would give ~840 changes)
    assert 0.55 < ep["bad"].mean() < 0.85


def _hf(img):
    g = img.mean(-1)
    return np.mean(np.abs(np.diff(g, axis=0))) + np.mean(np.abs(np.diff(g, axis=1)))


def test_degradations_change_statistics():
    rng = np.random.default_rng(0)
    fr = M.render_frames(M.make_scene(rng, 192), M.camera_path(rng, 4, 192, 64), 64, rng, noise=0.0)["frames"]
    img = fr[0]
    assert _hf(M.degrade_one(img.copy(), "blur", 0.8, rng)) < 0.6 * _hf(img)
    assert _hf(M.degrade_one(img.copy(), "motion", 0.8, rng)) < 0.8 * _hf(img)
    glare = M.degrade_one(img.copy(), "glare", 0.8, rng)
    assert (glare.min(-1) > 0.97).mean() > (img.min(-1) > 0.97).mean() + 0.02
    contact = M.degrade_one(img.copy(), "contact", 0.9, rng)
    assert contact.std((0, 1)).mean() < 0.5 * img.std((0, 1)).mean()
    bub = M.degrade_one(img.copy(), "bubbles", 0.8, rng)
    assert bub.mean() > img.mean() and _hf(bub) > _hf(img)


def test_label_matches_episodes():
    ss = np.random.SeedSequence(5).spawn(1)[0]
    v = C.render_video(ss, 120, dict(TINY))
    assert np.all(v["kind"][v["labels"] == 0] >= 0)          # every non-informative frame is degraded
    lo = C._severity_ranges(1.0)[0][0]
    assert np.all(v["severity"][v["labels"] == 0] >= lo - 1e-9)
    assert np.all(v["severity"][v["labels"] == 1] < lo)


def test_bad_difficulty():
    from aift_tf.errors import AiftError
    with pytest.raises(AiftError):
        C.generate(seed=0, config=TINY, difficulty=5)
