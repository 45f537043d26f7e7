"""Self-supervised M0 on the pool (issue 13): labels never read, deterministic per seed, a better linear
probe than a random trunk on a small store, the `aift-data pretrain --self-supervised` CLI and the
`aift-sim --m0 self-supervised` wiring."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from aift_tf.errors import AiftError


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """A small colonoscopy-like store (labels known, for the probe) and a copy whose labels are all -1."""
    from aift_tf.store import write_store
    from simulate.apps import colonoscopy_frames as C

    d = C.generate(seed=0, config=dict(videos=[("train", 40)] * 4, frame=48, patch=16, m=4, scene=160))
    root = tmp_path_factory.mktemp("ssl")
    labeled = root / "labeled.h5"
    write_store(labeled, d["patches"], d["labels"], d["groups"], d["split"], app="c", class_names=d["class_names"])
    unlabeled = root / "unlabeled.h5"
    write_store(unlabeled, d["patches"][:48], np.full(48, -1), d["groups"][:48], d["split"][:48], app="c",
                class_names=d["class_names"])
    return {"labeled": labeled, "unlabeled": unlabeled, "root": root}


def _weights(path, shape):
    from aift_tf.zoo import build_model

    return build_model("small_cnn", shape, num_classes=2, weights=str(path), seed=0).get_weights()


def test_labels_never_read_and_deterministic_per_seed(stores, tmp_path):
    from aift_tf.store import open_store
    from aift_tf.zoo.pretrained import m0_card
    from aift_tf.ssl import ssl_pretrain

    with open_store(stores["unlabeled"]) as st:
        assert (st.labels == -1).all()
        a = ssl_pretrain(st, tmp_path / "a.weights.h5", steps=4, batch_size=8, seed=1, progress=False)
        shape = tuple(st.patch_shape)
    ssl_pretrain(stores["unlabeled"], tmp_path / "b.weights.h5", steps=4, batch_size=8, seed=1, progress=False)
    ssl_pretrain(stores["unlabeled"], tmp_path / "c.weights.h5", steps=4, batch_size=8, seed=2, progress=False)
    wa, wb, wc = (_weights(tmp_path / f"{k}.weights.h5", shape) for k in "abc")
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb))  # same seed: the same weights
    assert not all(np.array_equal(x, y) for x, y in zip(wa, wc))
    card = m0_card(tmp_path / "a.weights.h5")
    assert card == json.loads((tmp_path / "a.json").read_text()) and card["sha256"] == a["sha256"]
    assert card["data"]["labels_read"] is False and card["input_shape"] == list(shape)
    assert card["model"] == "small_cnn" and card["method"]["name"] == "simclr-candidate-views"
    assert len(card["history"]["loss"]) >= 1 and np.isfinite(card["final_loss"])


def test_ssl_trunk_beats_random_trunk_in_a_linear_probe(stores, tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from aift_tf.store import open_store
    from aift_tf.ssl import pooled_features, ssl_pretrain

    out = tmp_path / "ssl.weights.h5"
    ssl_pretrain(stores["labeled"], out, steps=100, batch_size=32, seed=0, progress=False)
    with open_store(stores["labeled"]) as st:
        ids = st.ids("train")
        y = st.labels[ids]
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
        auc = {name: cross_val_score(probe, pooled_features(w, st, ids), y, cv=4, scoring="roc_auc").mean()
               for name, w in (("ssl", str(out)), ("random", None))}
    assert auc["ssl"] > auc["random"] + 0.05, auc


def test_bad_arguments(stores, tmp_path):
    from aift_tf.ssl import ssl_pretrain

    for kw, frag in ((dict(steps=0), r"steps must be an integer >= 1; got 0"),
                     (dict(batch_size=1), r"batch_size must be an integer >= 2; got 1"),
                     (dict(lr=-1.0), r"lr must be a number > 0; got -1"),
                     (dict(model="nope"), "unknown model")):
        with pytest.raises(AiftError, match=frag):
            ssl_pretrain(stores["unlabeled"], tmp_path / "x.weights.h5", progress=False, **kw)
    with pytest.raises(AiftError, match="must end with .weights.h5"):
        ssl_pretrain(stores["unlabeled"], tmp_path / "x.h5", progress=False)
    with pytest.raises(AiftError, match="split has 0"):
        ssl_pretrain(stores["unlabeled"], tmp_path / "x.weights.h5", split="test", progress=False)
    assert not list(tmp_path.iterdir())


def test_data_cli_self_supervised(stores, tmp_path):
    from test_data_cli import _Main

    runner = CliRunner()
    cli = _Main()
    bad = [(["--self-supervised", "--out", str(tmp_path / "m.weights.h5")], "needs --data"),
           (["--self-supervised", "--data", str(stores["unlabeled"]), "--out", str(tmp_path / "m.weights.h5"),
             "--epochs", "2"], "--epochs does not apply"),
           (["--data", str(stores["unlabeled"])], "--data applies only to --self-supervised"),
           (["--self-supervised", "--data", str(tmp_path / "none.h5"), "--out", str(tmp_path / "m.weights.h5")],
            "no such file")]
    for args, frag in bad:
        r = runner.invoke(cli, ["pretrain", *args])
        assert r.exit_code == 2 and frag in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not list(tmp_path.iterdir())
    out = tmp_path / "m.weights.h5"
    r = runner.invoke(cli, ["pretrain", "--self-supervised", "--data", str(stores["unlabeled"]), "--out", str(out),
                            "--steps", "2", "--batch-size", "8", "--quiet"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.strip().splitlines()[-1])["weights_file"] == "m.weights.h5"
    assert (tmp_path / "m.json").is_file()
    r = runner.invoke(cli, ["pretrain", "--self-supervised", "--data", str(stores["unlabeled"]), "--out", str(out)])
    assert r.exit_code == 2 and "--overwrite" in r.output


def test_sim_m0_self_supervised_is_resolved_and_cached(stores, tmp_path, monkeypatch):
    import aift_tf.ssl as ssl
    from aift_tf.store import open_store
    from simulate.config import SimConfig, check_config
    from simulate.experiment import resolve_m0

    with pytest.raises(AiftError, match="not both"):
        check_config(SimConfig(data=str(stores["labeled"]), m0="self-supervised", weights="none"))
    with pytest.raises(AiftError, match="m0 must be one of offline, self-supervised; got "):
        check_config(SimConfig(data=str(stores["labeled"]), m0="imagenet"))
    assert check_config(SimConfig(data=str(stores["labeled"]), m0="offline")).m0 is None
    cfg = check_config(SimConfig(data=str(stores["unlabeled"]), m0="Self-Supervised"))
    monkeypatch.setattr(ssl, "DEFAULT_STEPS", 2)
    monkeypatch.setattr(ssl, "DEFAULT_BATCH_SIZE", 8)
    with open_store(stores["unlabeled"]) as st:
        rec = resolve_m0(cfg, st.patch_shape, store=st, cache_dir=tmp_path)
        files = sorted((tmp_path / "m0").glob("*.weights.h5"))
        assert rec["source"] == "self-supervised" and rec["path"] == str(files[0].resolve())
        assert "self-supervised on this store's pool" in rec["summary"] and rec["card"]["steps"] == 2
        mtime = files[0].stat().st_mtime_ns
        again = resolve_m0(cfg, st.patch_shape, store=st, cache_dir=tmp_path)  # reused, not retrained
        assert again["sha256"] == rec["sha256"] and files[0].stat().st_mtime_ns == mtime


def test_init_from_the_offline_m0_keeps_its_adapted_input(stores, tmp_path):
    import warnings

    from aift_tf.zoo import build_model
    from aift_tf.zoo.pretrained import default_m0
    from aift_tf.ssl import ssl_pretrain

    m0 = default_m0("small_cnn", (16, 16, 3))
    card = ssl_pretrain(stores["unlabeled"], tmp_path / "i.weights.h5", steps=2, batch_size=8, init=m0, progress=False)
    assert card["input_shape"] == [32, 32, 3] and card["init"]["weights"] == str(m0)  # the M0's shape, resized
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = build_model("small_cnn", (16, 16, 3), num_classes=2, weights=str(tmp_path / "i.weights.h5"))
    skipped = [str(w.message) for w in caught if "skipped" in str(w.message)]
    assert model.get_layer("pre_resize") is not None and all("head_dense" in s for s in skipped), skipped


def test_project_init_from_the_self_supervised_m0(stores, tmp_path, monkeypatch):
    """`init_project(m0="self-supervised")` (`aift init --m0 self-supervised`): the project's M0 is the store's own
    SimCLR M0 (pre-trained once, cached), recorded in config.json; checkpoint round-000 holds its trunk."""
    import aift_tf.ssl as ssl
    from aift_tf.project import init_project
    from aift_tf.store import open_store

    monkeypatch.setattr(ssl, "DEFAULT_STEPS", 2)
    with pytest.raises(AiftError, match=r"weights must be 'm0' with m0='self-supervised' \(.*\); got 'none'"):
        init_project(tmp_path / "bad", stores["labeled"], weights="none", m0="self-supervised", cache_dir=tmp_path)
    with pytest.raises(AiftError, match="m0 must be one of offline, self-supervised; got 'simclr'"):
        init_project(tmp_path / "bad", stores["labeled"], m0="simclr", cache_dir=tmp_path)
    assert not (tmp_path / "bad").exists()
    p = init_project(tmp_path / "proj", stores["labeled"], m0="self-supervised", cache_dir=tmp_path / "cache",
                     trainable="top", epochs=1)
    cfg = json.loads((p / "config.json").read_text())
    files = sorted((tmp_path / "cache" / "m0").glob("*.weights.h5"))
    assert len(files) == 1 and cfg["m0"]["source"] == "self-supervised" and cfg["weights"] == str(files[0].resolve())
    assert cfg["m0"]["card"]["steps"] == 2 and "self-supervised on this store's pool" in cfg["m0"]["summary"]
    import keras

    from aift_tf.zoo import build_model

    with open_store(stores["labeled"]) as st:
        ssl_net = build_model("small_cnn", tuple(st.patch_shape), num_classes=st.num_classes, weights=cfg["weights"],
                              seed=5)
    m0 = keras.models.load_model(p / "checkpoints" / "round-000" / "model.keras", compile=False)
    conv = [layer.name for layer in ssl_net.layers if layer.name.endswith("_conv")]
    assert conv and all(np.allclose(m0.get_layer(n).get_weights()[0], ssl_net.get_layer(n).get_weights()[0])
                        for n in conv)


def test_aift_init_m0_self_supervised_cli(stores, tmp_path, monkeypatch):
    """`aift init --m0 self-supervised`: a one-line exit-2 error with --weights; otherwise the project starts
    from the store's own SimCLR M0 and `aift status` says so."""
    import aift_tf.ssl as ssl
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_aift_cli import aift, one_line_error

    monkeypatch.setattr(ssl, "DEFAULT_STEPS", 2)
    monkeypatch.setenv("AIFT_CACHE", str(tmp_path / "cache"))
    r = aift(*["init", str(tmp_path / "bad"), "--data", str(stores["labeled"]), "--m0", "self-supervised",
                            "--weights", "none"])
    assert r.exit_code == 2 and "weights must be 'm0' with m0='self-supervised'" in one_line_error(r.stderr)
    assert not (tmp_path / "bad").exists()
    r = aift(*["init", str(tmp_path / "bad"), "--data", str(stores["labeled"]), "--m0", "simclr"])
    line = one_line_error(r.stderr)
    assert r.exit_code == 2 and "'simclr'" in line and "offline" in line and "self-supervised" in line
    r = aift(*["init", str(tmp_path / "p"), "--data", str(stores["labeled"]), "--m0", "self-supervised",
                            "--trainable", "top", "--epochs", "1", "--quiet"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "p" / "config.json").read_text())
    assert cfg["m0"]["source"] == "self-supervised"
    assert len(list((tmp_path / "cache" / "m0").glob("*.weights.h5"))) == 1
    r = aift(*["status", str(tmp_path / "p")])
    assert r.exit_code == 0 and "self-supervised" in r.output, r.output
