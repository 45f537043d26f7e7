"""Offline M0 pre-training: procedural source images, a tiny pretrain run, the committed default M0."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aift_tf.errors import AiftError
from aift_tf.files import file_sha256
from simulate import pretrain as pt
from simulate import source_images as si

# ---------------------------------------------------------------------------------------------
# generator


def test_generator_classes_are_advertised_and_disjoint():
    src, probe = si.class_names("source"), si.class_names("probe")
    assert len(src) == si.num_classes("source") == len(si.SOURCE_SHAPES) * len(si.SOURCE_TEXTURES) == 40
    assert len(probe) == si.num_classes("probe") == len(si.PROBE_SHAPES) * len(si.PROBE_TEXTURES) == 12
    assert len(set(src)) == 40 and len(set(probe)) == 12
    assert not set(si.SOURCE_SHAPES) & set(si.PROBE_SHAPES)
    assert not set(si.SOURCE_TEXTURES) & set(si.PROBE_TEXTURES)
    assert src[1] == f"{si.SOURCE_SHAPES[0]}/{si.SOURCE_TEXTURES[1]}"


@pytest.mark.parametrize("task,shape", [("source", (32, 32, 3)), ("probe", (16, 24, 1)), ("source", (20, 20, 1))])
def test_generator_shapes_labels_and_content(task, shape):
    k = si.num_classes(task)
    x, y = si.generate(2 * k, task, shape, seed=1)
    assert x.shape == (2 * k,) + shape and x.dtype == np.uint8
    assert y.dtype == np.int64 and np.array_equal(y, np.arange(2 * k) % k)
    assert np.bincount(y, minlength=k).tolist() == [2] * k
    # every image has content (not a flat field)
    assert (x.reshape(len(x), -1).std(axis=1) > 2).all()


def test_generator_is_deterministic_per_seed_and_prefix_stable():
    a, ya = si.generate(30, "source", (32, 32, 3), seed=7)
    b, yb = si.generate(30, "source", (32, 32, 3), seed=7)
    assert np.array_equal(a, b) and np.array_equal(ya, yb)
    c, _ = si.generate(30, "source", (32, 32, 3), seed=8)
    assert not np.array_equal(a, c)
    d, yd = si.generate(10, "source", (32, 32, 3), seed=7, start=20)
    assert np.array_equal(d, a[20:]) and np.array_equal(yd, ya[20:])
    p, _ = si.generate(30, "probe", (32, 32, 3), seed=7)
    assert not np.array_equal(a, p)


def test_generator_errors():
    with pytest.raises(AiftError, match="unknown proxy task"):
        si.generate(2, "imagenet")
    with pytest.raises(AiftError, match="image shape"):
        si.generate(2, "source", (32, 32, 2))
    with pytest.raises(AiftError, match="image shape"):
        si.generate(2, "source", (32, 32))
    assert si.contact_sheet("probe", (16, 16, 1), per_class=2).shape == (12 * 16, 2 * 16, 3)


# ---------------------------------------------------------------------------------------------
# a tiny pre-training run


def _trunk(model):
    return {layer.name: [np.asarray(w) for w in layer.get_weights()]
            for layer in model.layers if layer.weights and not layer.name.startswith("head_")}


def test_tiny_pretrain_writes_weights_and_card_atomically(tmp_path):
    from aift_tf.zoo import build_model

    out = tmp_path / "tiny.weights.h5"
    msgs = []
    card = pt.pretrain("small_cnn", (16, 16, 3), out=out, seed=3, epochs=1, samples=80, val_samples=40,
                       probe_samples=12, batch_size=40, progress=msgs.append)
    assert out.exists() and pt.card_path(out).exists()
    # nothing else left behind (temporaries renamed away)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.json", "tiny.weights.h5"]
    on_disk = json.loads(pt.card_path(out).read_text())
    assert on_disk == json.loads(json.dumps(card))
    assert pt.m0_card(out) == on_disk
    assert card["sha256"] == file_sha256(out) and card["size_bytes"] == out.stat().st_size
    assert card["model"] == "small_cnn" and card["input_shape"] == [16, 16, 3]
    assert card["source_task"]["num_classes"] == 40 and len(card["source_task"]["classes"]) == 40
    assert card["samples"] == {"train": 80, "val": 40} and card["epochs"] == 1 and card["seed"] == 3
    assert 0.0 <= card["source_val_accuracy"] <= 1.0
    lp = card["linear_probe"]
    for key in ("pretrained_test_accuracy", "random_init_test_accuracy", "raw_pixels_test_accuracy"):
        assert 0.0 <= lp[key] <= 1.0
    assert "--input-shape 16,16,3" in card["command"] and "--samples 80" in card["command"]
    assert any("source val accuracy" in m for m in msgs)

    # loads into a 2-class model: head skipped, trunk equal to the saved (40-class) weights
    full = build_model("small_cnn", (16, 16, 3), num_classes=40, weights=out)
    two = build_model("small_cnn", (16, 16, 3), num_classes=2, weights=out)
    assert two.output_shape[-1] == 2
    saved, loaded = _trunk(full), _trunk(two)
    assert saved.keys() == loaded.keys() and len(saved) >= 4
    for name in saved:
        for a, b in zip(saved[name], loaded[name]):
            np.testing.assert_array_equal(a, b)
    fresh = _trunk(build_model("small_cnn", (16, 16, 3), num_classes=2, seed=3))
    assert not np.array_equal(fresh["block1_conv"][0], loaded["block1_conv"][0])


def test_pretrain_rejects_bad_arguments_before_training(tmp_path):
    with pytest.raises(AiftError, match="does not exist"):
        pt.pretrain(out=tmp_path / "nope" / "m.weights.h5", progress=False)
    with pytest.raises(AiftError, match=r"\.weights\.h5"):
        pt.pretrain(out=tmp_path / "m.h5", progress=False)
    with pytest.raises(AiftError, match="epochs"):
        pt.pretrain(out=tmp_path / "m.weights.h5", epochs=0, progress=False)
    assert list(tmp_path.iterdir()) == []
    assert pt.main(["--out", str(tmp_path / "m.weights.h5"), "--samples", "0", "--quiet"]) == 2
    with pytest.raises(AiftError, match="no card"):
        pt.m0_card(tmp_path / "m.weights.h5")


# ---------------------------------------------------------------------------------------------
# the committed default M0


def test_committed_default_m0_exists_loads_and_matches_its_card():
    from aift_tf.zoo import build_model

    path = pt.default_m0()
    assert path is not None, "aift_tf/zoo/pretrained/small_cnn_32x32x3.weights.h5 (+ .json card) is missing"
    assert path == pt.WEIGHTS_DIR / "small_cnn_32x32x3.weights.h5"
    assert path.stat().st_size < 5_000_000
    card = pt.m0_card(path)
    assert card["sha256"] == file_sha256(path)
    assert card["model"] == "small_cnn" and card["input_shape"] == [32, 32, 3]
    assert card["source_task"]["num_classes"] == 40
    assert card["source_val_accuracy"] > 3.0 / 40  # well above chance
    for key in ("pretrained_test_accuracy", "random_init_test_accuracy", "raw_pixels_test_accuracy"):
        assert key in card["linear_probe"]
    assert card["command"].startswith("python -m simulate.pretrain")

    two = build_model("small_cnn", (32, 32, 3), num_classes=2, weights=path)
    full = build_model("small_cnn", (32, 32, 3), num_classes=40, weights=path)
    for name, ws in _trunk(full).items():
        for a, b in zip(ws, _trunk(two)[name]):
            np.testing.assert_array_equal(a, b)
    probs = np.asarray(two(np.zeros((2, 32, 32, 3), "float32")))
    assert probs.shape == (2, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_default_m0_is_the_library_asset_and_serves_other_shapes():
    from aift_tf.zoo import pretrained

    # one owner: simulate.pretrain re-exports the library's M0 lookup and card reader
    assert pt.WEIGHTS_DIR == pretrained.PRETRAINED_DIR
    assert pt.m0_card is pretrained.m0_card and pt.card_path is pretrained.card_path
    committed = pt.WEIGHTS_DIR / "small_cnn_32x32x3.weights.h5"
    for shape in [(64, 64, 3), (28, 28, 1), (17, 9, 1)]:  # adapted inside the model (tests/test_m0_any_store.py)
        assert pt.default_m0("small_cnn", shape) == committed
    for shape in [(32, 32, 2), (32, 32, 4)]:  # channels that no shipped M0 can feed
        assert pt.default_m0("small_cnn", shape) is None
    assert pt.default_m0("vgg16", (32, 32, 3)) is None
