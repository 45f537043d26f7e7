"""Zoo: builders, trainable policies, frozen-trunk split, weights and their errors (32×32, tiny)."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from aift_tf.errors import AiftError  # noqa: E402
from aift_tf.zoo import (MODEL_NAMES, build_model, model_config, rebuild_model, set_trainable,  # noqa: E402
                         split_frozen)
from aift_tf.zoo import weights as zw  # noqa: E402

TINY = {"alexnet": {"width": 0.0625}, "small_cnn": {"width": 0.25}}


def _x(channels=3, n=2, size=32, seed=0):
    return np.random.default_rng(seed).random((n, size, size, channels), dtype=np.float32)


def _check_probs(model, x, k=2):
    p = np.asarray(model(x, training=False))
    assert p.shape == (len(x), k) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    # a plain model(x) must be inference mode too (no BatchNorm batch statistics)
    np.testing.assert_allclose(np.asarray(model(x)), p, atol=1e-6)
    return p


@pytest.mark.parametrize("name,channels", [("small_cnn", 1), ("small_cnn", 3), ("alexnet", 1), ("alexnet", 3),
                                           ("mobilenet_v2", 1)])  # mobilenet_v2 RGB: test_policies_and_split
def test_builders_forward(name, channels):
    m = build_model(name, (32, 32, channels), 2, seed=0, **TINY.get(name, {}))
    assert m.name == name
    _check_probs(m, _x(channels))
    assert m.get_layer("head_softmax").dtype_policy.compute_dtype == "float32"
    if channels == 1 and name == "mobilenet_v2":
        assert m.get_layer("pre_gray2rgb") is not None


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg16", "resnet50", "efficientnet_b0", "densenet121"])
@pytest.mark.parametrize("channels", [1, 3])
def test_heavy_builders_forward(name, channels):
    m = build_model(name, (32, 32, channels), 3, seed=0)
    _check_probs(m, _x(channels, n=1), k=3)


def test_small_inputs_and_adapter():
    m = build_model("alexnet", (28, 28, 2), 4, **TINY["alexnet"])
    assert m.get_layer("pre_resize").output.shape[1:3] == (67, 67)
    _check_probs(m, _x(2, size=28), k=4)
    m = build_model("mobilenet_v2", (16, 16, 4), 2)
    assert m.get_layer("pre_adapter").filters == 3
    _check_probs(m, _x(4, size=16))


def test_bad_arguments():
    with pytest.raises(AiftError, match="small_cnn.*alexnet.*densenet121"):
        build_model("lenet")
    for shape in [(32, 32), (32, 0, 3), "abc", (32.5, 32, 3)]:
        with pytest.raises(AiftError, match="input_shape"):
            build_model("small_cnn", shape)
    for k in [1, 0, 2.5, "2"]:
        with pytest.raises(AiftError, match="num_classes"):
            build_model("small_cnn", num_classes=k)
    with pytest.raises(AiftError, match="trainable must be one of all, top, head; got 'most'"):
        build_model("small_cnn", trainable="most")
    with pytest.raises(AiftError, match="ImageNet"):
        build_model("mobilenet_v2", (32, 32, 4), weights="imagenet")
    with pytest.raises(AiftError, match="no ImageNet weights.*simulate"):
        build_model("small_cnn", weights="imagenet")
    with pytest.raises(AiftError, match="no ImageNet weights"):
        build_model("alexnet", weights="imagenet")
    with pytest.raises(AiftError, match="weights"):
        build_model("small_cnn", weights="model.pt")


@pytest.mark.parametrize("name", ["small_cnn", "mobilenet_v2"])
def test_policies_and_split(name):
    m = build_model(name, (32, 32, 3), 2, seed=1, **TINY.get(name, {}))
    x = _x(3, n=3)
    ref = np.asarray(m(x, training=False))
    n_all = len(m.trainable_weights)
    seen = {}
    for policy in ("head", "top"):
        set_trainable(m, policy)
        assert model_config(m)["trainable"] == policy
        trainable = {layer.name for layer in m.layers if layer.trainable_weights}
        assert all(layer.trainable for layer in m.layers if layer.name.startswith("head_"))
        if policy == "head":
            assert trainable == {"head_dense"}
        else:
            assert "head_dense" in trainable and len(trainable) > 1
            assert len(m.trainable_weights) < n_all
        # frozen BatchNorm must not change in a training step
        bn = [layer for layer in m.layers if isinstance(layer, keras.layers.BatchNormalization)
              and not layer.trainable][0]
        trunk, rest = split_frozen(m)
        assert not trunk.trainable_weights
        assert len(rest.trainable_weights) == len(m.trainable_weights)
        assert rest.get_layer("head_dense") is m.get_layer("head_dense")
        feats = trunk(x, training=False)
        assert len(feats.shape) in (2, 4)
        np.testing.assert_allclose(np.asarray(rest(feats, training=False)), ref, atol=1e-5)
        seen[policy] = tuple(feats.shape[1:])
        # training rest trains the model (shared weights); frozen BN statistics stay put
        before_bn = [np.array(v) for v in bn.weights]
        before = np.array(m.get_layer("head_dense").bias)
        rest.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
        rest.train_on_batch(feats, np.array([0, 1, 1]))
        assert not np.allclose(np.array(m.get_layer("head_dense").bias), before)
        for a, b in zip(before_bn, bn.weights):
            np.testing.assert_array_equal(a, np.array(b))
        ref = np.asarray(m(x, training=False))
    assert len(seen["head"]) == 1  # "head" caches pooled features
    set_trainable(m, "all")
    assert len(m.trainable_weights) == n_all
    trunk, rest = split_frozen(m)
    np.testing.assert_allclose(np.asarray(rest(trunk(x))), np.asarray(m(x)), atol=1e-5)


def test_split_frozen_rejects_foreign_model():
    inp = keras.Input((4,))
    m = keras.Model(inp, keras.layers.Dense(2)(inp), name="foreign")
    with pytest.raises(AiftError, match="not built by aift_tf.zoo"):
        split_frozen(m)


def test_weights_file_roundtrip(tmp_path):
    m = build_model("small_cnn", (32, 32, 1), 2, seed=0, **TINY["small_cnn"])
    x = _x(1)
    path = tmp_path / "m0.weights.h5"
    m.save_weights(path)
    m2 = build_model("small_cnn", (32, 32, 1), 2, seed=5, weights=path, **TINY["small_cnn"])
    np.testing.assert_allclose(np.asarray(m2(x)), np.asarray(m(x)), atol=1e-6)
    # another class count: the head is skipped (warning), the backbone loads
    with pytest.warns(UserWarning, match="skipped"):
        m3 = build_model("small_cnn", (32, 32, 1), 3, seed=5, weights=path, trainable="head",
                         **TINY["small_cnn"])
    np.testing.assert_array_equal(np.array(m3.get_layer("block1_conv").kernel),
                                  np.array(m.get_layer("block1_conv").kernel))
    assert model_config(m3)["trainable"] == "head" and m3.output_shape == (None, 3)
    # nothing matches: another architecture
    with pytest.raises(AiftError, match="no layer.*loaded"):
        build_model("alexnet", (32, 32, 1), 2, weights=path, **TINY["alexnet"])
    with pytest.raises(AiftError, match="not found"):
        build_model("small_cnn", weights=tmp_path / "missing.weights.h5")
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(AiftError, match="bad.weights.h5"):
        build_model("small_cnn", weights=bad)


def test_keras_file_and_config(tmp_path):
    m = build_model("alexnet", (32, 32, 1), 2, seed=0, dropout=0.3, **TINY["alexnet"])
    x = _x(1)
    path = tmp_path / "m0.keras"
    m.save(path)
    # reload without custom_objects (custom layers are registered)
    again = keras.models.load_model(path)
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(m(x)), atol=1e-6)
    cfg = model_config(again)
    assert cfg["name"] == "alexnet" and cfg["input_shape"] == [32, 32, 1] and cfg["num_classes"] == 2
    assert cfg["dropout"] == pytest.approx(0.3) and cfg["width"] == pytest.approx(0.0625)
    m2 = build_model("alexnet", (32, 32, 1), 2, weights=path, trainable="top")
    np.testing.assert_allclose(np.asarray(m2(x)), np.asarray(m(x)), atol=1e-6)
    assert model_config(m2)["trainable"] == "top"
    r = rebuild_model(m2)
    assert r.count_params() == m.count_params() and model_config(r)["trainable"] == "top"
    with pytest.raises(AiftError, match="classes"):
        build_model("alexnet", (32, 32, 1), 3, weights=path)
    with pytest.raises(AiftError, match="input shape"):
        build_model("alexnet", (32, 32, 3), 2, weights=path)
    with pytest.raises(AiftError, match="not 'small_cnn'"):
        build_model("small_cnn", (32, 32, 1), 2, weights=path)


def test_imagenet_offline_message(tmp_path, monkeypatch):
    from keras.src.backend import config

    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path / "keras_home"))
    fname = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    assert zw.imagenet_filename("mobilenet_v2", (32, 32, 3)) == fname
    assert zw.imagenet_filename("mobilenet_v2", (128, 128, 1)).endswith("1.0_128_no_top.h5")
    assert zw.keras_cache_dir() == tmp_path / "keras_home" / "models"
    try:
        build_model("mobilenet_v2", (32, 32, 3), weights="imagenet")
    except AiftError as e:
        msg = str(e)
        assert fname in msg and str(tmp_path / "keras_home" / "models") in msg and "\n" not in msg
        assert "connected machine" in msg
    else:  # pragma: no cover - only with network access
        pytest.skip("ImageNet weights were downloaded (network available)")


def test_model_names():
    assert MODEL_NAMES == ("small_cnn", "alexnet", "vgg16", "resnet50", "mobilenet_v2", "efficientnet_b0",
                           "densenet121", "efficientnet_lite0")
    for name in MODEL_NAMES[2:]:
        assert zw.imagenet_filename(name).endswith(".h5")
