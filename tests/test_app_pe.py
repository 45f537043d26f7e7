"""Tests of the simulated pulmonary-embolism app (tiny internal scale; one paper-scale volume)."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from aift_tf.errors import AiftError
from simulate.apps import _volume as V
from simulate.apps import pulmonary_embolism as PE


@pytest.fixture(scope="module")
def tiny():
    return PE.generate(scale="tiny", seed=3)


def test_contract_shapes_dtypes(tiny):
    d = tiny
    n = len(d["labels"])
    assert n > 50
    assert d["patches"].shape == (n, 2, 16, 16, 3) and d["patches"].dtype == np.uint8
    assert d["labels"].shape == (n,) and set(np.unique(d["labels"])) <= {0, 1}
    assert d["groups"].shape == (n,) and d["split"].shape == (n,)
    assert set(d["split"]) <= {"train", "val", "test"}
    assert d["class_names"] == ["non-PE", "PE"]
    a = d["attrs"]
    assert a["group_kind"] == "volume" and a["num_volumes"] == 6
    assert a["patch_size"] == 16 and a["m"] == 2 and a["hu_window"] == [-100.0, 500.0]
    assert sum(a["num_emboli_per_split"].values()) == a["num_emboli"]
    assert PE.NAME == "pulmonary-embolism" and PE.SCALES == ("quick", "paper")
    # patches are not blank: vessels (bright) and lung (dark) in most of them
    assert d["patches"].max() > 200 and d["patches"].mean() > 5


def test_deterministic_per_seed(tiny):
    cfg, vp = PE._config("tiny", 0.5, None, None)
    a = PE.simulate_volume(0, 3, vp, cfg)
    b = PE.simulate_volume(0, 3, vp, cfg)
    assert np.array_equal(a["patches"], b["patches"]) and np.array_equal(a["labels"], b["labels"])
    # the generated set is the concatenation of the independently generated volumes
    k = len(a["labels"])
    assert np.array_equal(tiny["patches"][:k], a["patches"]) and np.all(tiny["groups"][:k] == 0)
    c = PE.simulate_volume(0, 4, vp, cfg)
    assert len(c["labels"]) != k or not np.array_equal(c["patches"], a["patches"])


def test_split_by_volume(tiny):
    for g in np.unique(tiny["groups"]):
        assert len(np.unique(tiny["split"][tiny["groups"] == g])) == 1
    assert set(tiny["split"]) == {"train", "val", "test"}
    vols = {sp: set(np.unique(tiny["groups"][tiny["split"] == sp])) for sp in ("train", "val", "test")}
    assert [len(vols[s]) for s in ("train", "val", "test")] == [3, 1, 2]


def test_class_ratio_and_sensitivity(tiny):
    frac = tiny["labels"].mean()
    assert 0.04 < frac < 0.3  # target ~ 1 in 9
    a = tiny["attrs"]
    assert a["num_emboli"] >= 5
    assert a["generator_sensitivity"] >= 0.8
    assert a["candidate_sources"]["embolus"] == int(tiny["labels"].sum())


def test_generator_finds_planted_emboli_without_truth():
    vp = V.volume_params(0.5)
    vol = V.synthesize_volume(11, vp)
    centres, clusters = V.detect_candidates(vol["image"], vp)  # the image only
    labels, hit, _ = V.label_candidates(clusters, vol["emboli"])
    assert clusters.max() == len(centres) == len(labels)
    if len(hit):
        assert hit.mean() >= 0.5
    # a volume without emboli yields only negatives
    vol0 = V.synthesize_volume(11, V.volume_params(0.5, emboli_per_volume=0.0))
    c0, cl0 = V.detect_candidates(vol0["image"], vp)
    assert len(c0) > 5 and V.label_candidates(cl0, vol0["emboli"])[0].sum() == 0


def test_positive_centres_are_dark_inside_bright():
    cfg, vp = PE._config("tiny", 0.5, None, None)
    pos_c, pos_ring = [], []
    for i in range(3):
        r = PE.simulate_volume(i, 5, vp, cfg, keep_volume=True)
        img = ndi.gaussian_filter(r["volume"]["image"].astype(float), 0.5)
        lm = ndi.maximum_filter(img, size=7)
        for c in r["centres"][r["labels"] == 1]:
            q = tuple(np.round(c).astype(int))
            pos_c.append(img[q])
            pos_ring.append(lm[q])
        # patches: the centre of positive axial patches is darker than their brightest part
        p = r["patches"][r["labels"] == 1].astype(float)
        if len(p):
            centre = p[:, :, 6:10, 6:10, :].mean()
            bright = np.percentile(p.reshape(len(p), -1), 95, axis=1).mean()
            assert centre < bright
    assert len(pos_c) >= 3
    assert np.mean(pos_c) < np.mean(pos_ring) - 100  # emboli: dark filling defects in bright vessels
    assert np.mean(pos_c) < 200


def test_paper_scale_single_volume():
    cfg, vp = PE._config("paper", 0.5, None, None)
    assert cfg["volumes"] == (67, 8, 46) and cfg["patch_size"] == 64 and cfg["m"] == 24
    r = PE.simulate_volume(0, 0, vp, cfg)
    k = len(r["labels"])
    assert k > 5 and r["patches"].shape == (k, 24, 64, 64, 3) and r["patches"].dtype == np.uint8


def test_difficulty_and_bad_options():
    easy, hard = V.volume_params(0.0), V.volume_params(1.0)
    assert easy["noise_hu"] < hard["noise_hu"] and easy["embolus_hu"][1] < hard["embolus_hu"][1]
    with pytest.raises(AiftError):
        PE.generate(scale="huge")
    with pytest.raises(AiftError):
        PE.generate(scale="tiny", difficulty=2.0)
    with pytest.raises(AiftError):
        PE.generate(scale="tiny", volume_overrides={"nope": 1})


def test_store_roundtrip(tiny, tmp_path):
    store = pytest.importorskip("aift_tf.store")
    d = tiny
    path = store.write_store(tmp_path / "pe.h5", d["patches"], d["labels"], d["groups"], d["split"],
                             app=PE.NAME, class_names=d["class_names"], attrs=d["attrs"])
    with store.open_store(path) as s:
        assert s.n == len(d["labels"]) and s.m == 2 and s.patch_shape == (16, 16, 3)
        assert np.array_equal(s.read([0, 5]), d["patches"][[0, 5]])
        assert s.attrs["group_kind"] == "volume"


def test_the_app_cuts_with_the_library_cutter_and_keeps_patch0_augmented():
    from aift_tf import volumes

    assert V.extract_patches is volumes.extract_patches and V.augmentation_params is volumes.augmentation_params
    # generator version 3 augments every patch, patch 0 included (plain_first=False keeps its data
    # byte-identical); the library default makes patch 0 the plain view, with the same other draws
    cfg, vp = PE._config("tiny", 0.5, None, None)
    r = PE.simulate_volume(1, 3, vp, cfg, keep_volume=True)
    rng = np.random.default_rng(np.random.SeedSequence([3, 1]).spawn(2)[1])
    a, s, t = volumes.augmentation_params(rng, len(r["centres"]), cfg["m"], cfg["scales"], cfg["max_shift"])
    plain = volumes.extract_patches(r["volume"]["image"], r["centres"], a, s, t, cfg["patch_size"], cfg["fov"],
                                    cfg["hu_window"], cval=vp["air_hu"])
    np.testing.assert_array_equal(plain[:, 1:], r["patches"][:, 1:])
    assert not np.array_equal(plain[:, 0], r["patches"][:, 0])


def test_patches_outside_block_are_air_not_mirrored():
    # a block of soft tissue: everything the sampling grid reads outside it must be air (0 after
    # windowing), not replicated / mirrored tissue
    img = np.full((10, 10, 10), 40.0, np.float32)
    ang = np.zeros((1, 1))
    pt = V.extract_patches(img, [[5.0, 5.0, 5.0]], ang, np.ones((1, 1)), np.zeros((1, 1, 3)), 16, 40.0,
                           (-100.0, 500.0), cval=-1000.0)
    assert pt[0, 0, 0, 0].max() == 0 and pt[0, 0, 8, 8].min() > 0


def test_truth_rules():
    cl = np.zeros((9, 9, 9), np.int32)
    cl[4, 4, 1:8] = 1                   # a 7-voxel cluster, centroid (4, 4, 4)
    emb = np.zeros_like(cl, dtype=np.int16)
    emb[4, 4, 5:8] = 1                  # the clot covers its right end only
    lab_cluster, hit, _ = V.label_candidates(cl, emb, rule="cluster")   # 4/7 voxels in the dilated clot
    lab_centre, _, _ = V.label_candidates(cl, emb, rule="centre")       # centre x=4 touches the dilation
    assert lab_cluster.tolist() == [1] and hit.tolist() == [True] and lab_centre.tolist() == [1]
    emb[:] = 0
    emb[4, 4, 8] = 1                    # just past the tip: 1/7 < 25 %, centre 4 voxels away
    assert V.label_candidates(cl, emb, rule="cluster")[0].tolist() == [0]
    assert V.label_candidates(cl, emb, rule="centre")[0].tolist() == [0]
    with pytest.raises(ValueError):
        V.label_candidates(cl, emb, rule="nearest")
    with pytest.raises(AiftError):
        PE.generate(scale="tiny", volume_overrides={"truth_rule": "nearest"})


def test_emboli_in_segmental_or_larger_arteries_with_contrast_rim():
    # emboli only in arteries of radius >= embolus_min_vessel_radius (taper 0.95 along a segment);
    # partial clots are narrower than the lumen and leave enhanced lumen beside them; complete
    # occlusions fill it
    vp = V.volume_params(0.5)
    seen = {True: 0, False: 0}
    rims = []
    for seed in (1, 2, 3):
        vol = V.synthesize_volume(seed, vp)
        for k, e in enumerate(vol["info"]["emboli"], 1):
            assert e["vessel_radius"] >= 0.95 * vp["embolus_min_vessel_radius"]
            seen[e["occlusive"]] += 1
            if e["occlusive"]:
                assert e["half_axes"][1] >= e["vessel_radius"]
            else:
                assert e["half_axes"][1] <= vp["embolus_width"][1] * e["vessel_radius"] + 1e-9
                m = vol["emboli"] == k
                ring = ndi.binary_dilation(m, iterations=3) & ~m & vol["vessel"]
                rims.append(np.percentile(vol["image"][ring], 90))
    assert seen[False] >= 2
    assert np.median(rims) > 200  # bright contrast next to partial clots (clots are 20-80 HU)
