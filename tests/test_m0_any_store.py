"""The shipped offline M0 serves any store: grayscale and other patch sizes adapt inside the model.

Covers ``aift_tf.zoo.pretrained`` (lookup, card, sha check, resolution), ``build_model`` with an M0 of
another shape (``pre_resize`` / ``pre_gray2rgb``; every trunk weight loaded, compared with the raw HDF5
file), ``.keras`` save/reload and ``rebuild_model``, the trunk cache over the adapted model, and
``aift init`` / ``aift status`` defaulting to the M0.
"""

import json
import shutil

import h5py
import numpy as np
import pytest

keras = pytest.importorskip("keras")

from aift_tf.errors import AiftError  # noqa: E402
from aift_tf.zoo import build_model, model_config, rebuild_model, set_trainable, split_frozen  # noqa: E402
from aift_tf.zoo import pretrained  # noqa: E402
from conftest import make_separable_arrays  # noqa: E402

M0 = pretrained.PRETRAINED_DIR / "small_cnn_32x32x3.weights.h5"


def _file_vars(path, prefix):
    """Raw arrays of the file's layers ``prefix``, ``prefix_1``, … (Keras 3 .weights.h5 layout), in order."""
    out = []
    with h5py.File(path, "r") as f:
        k = 0
        while f"layers/{prefix}{'' if k == 0 else f'_{k}'}" in f:
            g = f[f"layers/{prefix}{'' if k == 0 else f'_{k}'}/vars"]
            out.append([np.asarray(g[str(i)]) for i in range(len(g))])
            k += 1
    return out


def _trunk_layers(model):
    return [layer for layer in model.layers if layer.weights and not layer.name.startswith(("pre_", "head_"))]


def _build_from_m0(shape, **kw):
    """build_model from the shipped M0; the only layer skipped must be the (new) head."""
    with pytest.warns(UserWarning, match=r"1 layer\(s\) of 'small_cnn' skipped \(shape mismatch\): head_dense$"):
        return build_model("small_cnn", shape, 2, weights=pretrained.default_m0("small_cnn", shape), seed=3, **kw)


def _check_trunk_is_the_files(model):
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    file_convs, file_bns = _file_vars(M0, "conv2d"), _file_vars(M0, "batch_normalization")
    assert len(convs) == len(file_convs) == 4 and len(bns) == len(file_bns) == 4
    for layer, arrays in list(zip(convs, file_convs)) + list(zip(bns, file_bns)):
        got = layer.get_weights()
        assert len(got) == len(arrays), layer.name
        for a, b in zip(got, arrays):
            np.testing.assert_array_equal(a, b, err_msg=layer.name)
    # every weighted trunk layer is one of those (nothing else in the trunk stayed random)
    assert {layer.name for layer in _trunk_layers(model)} == {layer.name for layer in convs + bns}
    # and the file is not what a random build gives (the comparison can fail)
    fresh = build_model("small_cnn", model.input_shape[1:], 2, seed=3)
    assert not np.array_equal(np.asarray(fresh.get_layer("block1_conv").kernel), file_convs[0][0])


@pytest.mark.parametrize("shape,resize,gray", [((28, 28, 1), (32, 32), True), ((64, 64, 3), (32, 32), False)])
def test_m0_adapts_to_the_store_and_loads_every_trunk_weight(tmp_path, shape, resize, gray):
    assert pretrained.default_m0("small_cnn", shape) == M0
    m = _build_from_m0(shape)
    names = [layer.name for layer in m.layers]
    assert names[:3] == ["input", "pre_resize"] + (["pre_gray2rgb"] if gray else ["block1_conv"])
    r = m.get_layer("pre_resize")
    assert (r.height, r.width) == resize and r.antialias == (shape[0] > resize[0])
    assert m.get_layer("block1_conv").input.shape[1:] == (32, 32, 3)
    _check_trunk_is_the_files(m)
    cfg = model_config(m)
    assert cfg["backbone_shape"] == [32, 32, 3] and cfg["input_shape"] == list(shape)

    x = np.random.default_rng(0).random((3, *shape), dtype=np.float32)
    p = np.asarray(m(x))
    assert p.shape == (3, 2) and np.all(np.isfinite(p)) and np.allclose(p.sum(1), 1, atol=1e-5)

    # .keras round trip: same graph, weights, predictions and zoo config (recovered from the graph)
    path = tmp_path / "m.keras"
    m.save(path)
    again = keras.models.load_model(path)
    np.testing.assert_allclose(np.asarray(again(x)), p, atol=1e-6)
    assert model_config(again) == cfg
    via_zoo = build_model("small_cnn", shape, 2, weights=path)
    np.testing.assert_allclose(np.asarray(via_zoo(x)), p, atol=1e-6)
    # rebuild_model: same graph, random weights; with the M0 file: same trunk again
    fresh = rebuild_model(again, seed=4)
    assert [layer.name for layer in fresh.layers] == names and fresh.count_params() == m.count_params()
    assert model_config(fresh) == cfg
    with pytest.warns(UserWarning, match="head_dense"):
        again_m0 = rebuild_model(again, weights=M0)
    _check_trunk_is_the_files(again_m0)


def test_frozen_trunk_includes_the_adaptation_and_the_split_is_exact():
    m = _build_from_m0((28, 28, 1), trainable="top")
    trunk, rest = split_frozen(m)
    assert {"pre_resize", "pre_gray2rgb", "block1_conv"} <= {layer.name for layer in trunk.layers}
    assert not trunk.trainable_weights
    x = np.random.default_rng(1).random((4, 28, 28, 1), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(rest(trunk(x))), np.asarray(m(x)), atol=1e-5)
    set_trainable(m, "all")  # nothing frozen: the trunk is the (weightless) adaptation only
    trunk, rest = split_frozen(m)
    assert [layer.name for layer in trunk.layers] == ["input", "pre_resize", "pre_gray2rgb"]
    np.testing.assert_allclose(np.asarray(rest(trunk(x))), np.asarray(m(x)), atol=1e-5)


def _gray_store(path, channels=1, size=28):
    from aift_tf.store import write_store

    a = make_separable_arrays(n=40, m=2, size=size, channels=channels, seed=5)
    write_store(path, a["patches"], a["labels"], a["groups"], a["split"], app="gray <test>",
                class_names=["negative", "positive"])
    return path


def test_trunk_cache_over_the_adapted_m0(tmp_path):
    from aift_tf.finetune import FineTuneConfig
    from aift_tf.learner import ActiveLearner
    from aift_tf.store import open_store

    store_path = _gray_store(tmp_path / "gray.h5")
    args = dict(model_name="small_cnn", weights=str(M0), trainable="top", strategy="aift", seed=0, val_split=None,
                finetune=FineTuneConfig(epochs=1, batch_size=16, learning_rate=1e-3, balance=True))
    with open_store(store_path) as store, pytest.warns(UserWarning, match="head_dense"):
        plain = ActiveLearner(store, **args)
        cached = ActiveLearner(store, cache_trunk=tmp_path / "cache", **args)
        _check_trunk_is_the_files(cached.model)
        pool = plain.unlabeled_ids()
        np.testing.assert_allclose(cached.predict(pool), plain.predict(pool), rtol=0, atol=1e-5)
        ids = pool[:8]
        plain.teach(ids, store.labels[ids])
        cached.teach(ids, store.labels[ids])
        for a, b in zip(plain.model.get_weights(), cached.model.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
        assert list((tmp_path / "cache").iterdir())  # the side file was written


def test_no_m0_where_it_cannot_fit():
    for shape in [(28, 28, 2), (32, 32, 4), (32, 32, 0), (32, 32), "32x32x3", None]:
        assert pretrained.default_m0("small_cnn", shape) is None, shape
    for name in ["vgg16", "alexnet", "lenet", None]:
        assert pretrained.default_m0(name, (32, 32, 3)) is None
    assert pretrained.fits((28, 28, 1), (32, 32, 3)) and not pretrained.fits((32, 32, 3), (32, 32, 1))
    with pytest.raises(AiftError, match=r"^--weights m0: no offline pre-trained M0 fits model small_cnn and patch "
                                        r"shape 28x28x2 \(shipped M0s: small_cnn_32x32x3.weights.h5;"):
        pretrained.resolve_m0("m0", "small_cnn", (28, 28, 2))
    w, rec = pretrained.resolve_m0("m0", "small_cnn", (28, 28, 2), fallback=True)
    assert w is None and rec["source"] == "none" and rec["warning"].startswith("warning: no offline pre-trained")
    assert "RANDOM" in rec["warning"] and "\n" not in rec["warning"]
    # a store whose channels no M0 feeds: building with the M0 file does not adapt (conv1 cannot load)
    with pytest.warns(UserWarning, match="block1_conv"):
        m = build_model("small_cnn", (28, 28, 2), 2, weights=M0)
    assert "pre_gray2rgb" not in [layer.name for layer in m.layers] and "backbone_shape" not in model_config(m)
    # explicit backbone shapes are checked
    with pytest.raises(AiftError, match=r"backbone_shape \(32, 32, 3\): 2 input channel\(s\)"):
        build_model("small_cnn", (28, 28, 2), 2, backbone_shape=(32, 32, 3))
    with pytest.raises(AiftError, match="backbone_shape"):
        build_model("small_cnn", (28, 28, 1), 2, backbone_shape=(32, 0, 3))


def test_lookup_prefers_the_closest_m0_and_checks_the_sha(tmp_path):
    from aift_tf.files import file_sha256, write_json_atomic

    def add(name, shape):
        dst = tmp_path / f"{name}.weights.h5"
        shutil.copy(M0, dst)
        card = dict(pretrained.m0_card(M0), input_shape=list(shape), weights_file=dst.name, sha256=file_sha256(dst))
        write_json_atomic(pretrained.card_path(dst), card)
        return dst

    big, gray = add("small_cnn_64x64x3", (64, 64, 3)), add("small_cnn_28x28x1", (28, 28, 1))
    small = add("small_cnn_32x32x3", (32, 32, 3))
    look = lambda shape: pretrained.default_m0("small_cnn", shape, directory=tmp_path)  # noqa: E731
    assert look((28, 28, 1)) == gray  # exact
    assert look((20, 20, 1)) == gray  # same channel count before 1 -> 3
    assert look((56, 60, 3)) == big and look((24, 24, 3)) == small  # the closest size
    assert look((28, 28, 2)) is None
    # a card for another shape than its file name claims is ignored
    card = pretrained.m0_card(big)
    write_json_atomic(pretrained.card_path(big), dict(card, input_shape=[16, 16, 3]))
    assert look((56, 60, 3)) == small
    # a sha256 that does not match the file is an error, not a silent load
    write_json_atomic(pretrained.card_path(small), dict(pretrained.m0_card(small), sha256="0" * 64))
    with pytest.raises(AiftError, match="small_cnn_32x32x3.weights.h5: sha256 .* does not match its card"):
        look((24, 24, 3))


def test_m0_info_summarises_the_card():
    info = pretrained.m0_info(M0, "small_cnn", (28, 28, 1))
    card = json.loads(pretrained.card_path(M0).read_text())
    assert info["sha256"] == card["sha256"] and info["m0_shape"] == [32, 32, 3]
    assert info["adaptation"] == {"resize": [32, 32], "gray2rgb": True,
                                  "text": "28x28x1 -> resize to 32x32, gray -> RGB"}
    assert info["summary"].startswith(f"sha256 {card['sha256'][:12]}…; source task 40 classes; val acc 0.58")
    assert pretrained.m0_info(M0, "small_cnn", (32, 32, 3))["summary"].endswith("; same shape")


# ------------------------------------------------------------------------------------------------
# aift init / status


def _aift(*args):
    from click.testing import CliRunner

    from aift_tf import cli as aift_cli

    class _Main:
        name = "aift"

        def main(self, args=None, prog_name=None, **extra):
            aift_cli.main(args)

    return CliRunner().invoke(_Main(), [str(a) for a in args])


def test_aift_init_defaults_to_the_m0_and_status_reports_it(tmp_path):
    store = _gray_store(tmp_path / "gray.h5")
    project = tmp_path / "p"
    r = _aift("init", project, "--data", store, "--epochs", 1, "--quiet")
    assert r.exit_code == 0, r.output
    cfg = json.loads((project / "config.json").read_text())
    assert cfg["weights"] == str(M0) and cfg["m0"]["source"] == "default-m0"
    assert cfg["m0"]["sha256"] == pretrained.m0_card(M0)["sha256"] and cfg["m0"]["m0_shape"] == [32, 32, 3]
    r = _aift("status", project)
    assert r.exit_code == 0, r.output
    line = [ln for ln in r.output.splitlines() if ln.strip().startswith("M0:")]
    assert len(line) == 1 and f"M0: default-m0 {M0} (sha256 " in line[0]
    assert "adapted 28x28x1 -> resize to 32x32, gray -> RGB" in line[0]
    # the saved M0 checkpoint holds the pre-trained trunk
    model = keras.models.load_model(project / "checkpoints" / "round-000" / "model.keras")
    _check_trunk_is_the_files(model)


def test_aift_init_where_no_m0_fits(tmp_path):
    store = _gray_store(tmp_path / "two.h5", channels=2, size=16)
    r = _aift("init", tmp_path / "p", "--data", store, "--epochs", 1, "--quiet")
    assert r.exit_code == 0, r.output
    warn = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warn) == 1 and "no offline pre-trained M0 fits model small_cnn and patch shape 16x16x2" in warn[0]
    assert "RANDOM initialisation" in warn[0]
    cfg = json.loads((tmp_path / "p" / "config.json").read_text())
    assert cfg["weights"] is None and cfg["m0"]["source"] == "none"
    status = _aift("status", tmp_path / "p").output
    assert "M0: none (random initialisation: no offline pre-trained M0 fits" in status
    # --weights m0 given explicitly: an error, nothing written
    r = _aift("init", tmp_path / "q", "--data", store, "--weights", "m0", "--quiet")
    assert r.exit_code == 2 and not (tmp_path / "q").exists()
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --weights m0: no offline pre-trained M0 fits")
    # --weights none is still accepted and recorded as such
    r = _aift("init", tmp_path / "n", "--data", store, "--weights", "none", "--epochs", 1, "--quiet")
    assert r.exit_code == 0 and not [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
    assert json.loads((tmp_path / "n" / "config.json").read_text())["m0"]["source"] == "none"
