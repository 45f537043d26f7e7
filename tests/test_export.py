"""Export: candidate-level SavedModel (checked in a fresh process), .keras and provenance."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import aift_tf  # noqa: E402
from aift_tf.errors import AiftError  # noqa: E402
from aift_tf.export import export_model, load_exported  # noqa: E402
from aift_tf.zoo import build_model  # noqa: E402

M = 3


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    model = build_model("small_cnn", (32, 32, 1), 2, seed=0, width=0.25)
    x = np.random.default_rng(0).random((4, M, 32, 32, 1), dtype=np.float32)
    ref = np.asarray(model.predict(x.reshape(-1, 32, 32, 1), verbose=0)).reshape(4, M, 2)
    out = export_model(model, tmp / "m1", patches_per_candidate=M,
                       provenance={"strategy": "ACFT-HQ", "round": 3, "seed": 7, "labeled": 40,
                                   "data_sha256": "ab" * 32})
    return model, out, x, ref, tmp


def test_layout_and_provenance(exported):
    model, out, x, ref, tmp = exported
    assert sorted(p.name for p in out.iterdir()) == ["model.keras", "provenance.json", "saved_model"]
    assert not [p for p in tmp.iterdir() if p.name.startswith(".")]  # no temporary left
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["strategy"] == "ACFT-HQ" and prov["round"] == 3 and prov["labeled"] == 40
    assert prov["aift_tf_version"] == aift_tf.__version__
    assert prov["keras_version"] == keras.__version__ and prov["tensorflow_version"]
    assert prov["input_shape"] == [32, 32, 1] and prov["num_classes"] == 2
    assert prov["patches_per_candidate"] == M and prov["created"]
    assert prov["model_config"]["name"] == "small_cnn"


def test_saved_model_fresh_process(exported):
    model, out, x, ref, tmp = exported
    np.save(tmp / "x.npy", x)
    code = (
        "import sys, numpy as np, tensorflow as tf\n"
        "d = sys.argv[1]\n"
        "f = tf.saved_model.load(d + '/m1/saved_model').signatures['serving_default']\n"
        "o = f(patches=tf.constant(np.load(d + '/x.npy')))\n"
        "np.save(d + '/cand.npy', o['candidate_probability'].numpy())\n"
        "np.save(d + '/patch.npy', o['patch_probabilities'].numpy())\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, "-c", code, str(tmp)], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    patch = np.load(tmp / "patch.npy")
    cand = np.load(tmp / "cand.npy")
    assert patch.shape == (4, M, 2) and cand.shape == (4, 2)
    assert np.abs(patch - ref).max() <= 1e-5
    assert np.abs(cand - ref.mean(axis=1)).max() <= 1e-5


def test_load_exported_and_keras_file(exported):
    model, out, x, ref, tmp = exported
    em = load_exported(out)
    assert em.patches_per_candidate == M and em.input_shape == (32, 32, 1) and em.num_classes == 2
    assert em.provenance["round"] == 3
    o = em(x, batch_size=3)
    assert np.abs(o["patch_probabilities"] - ref).max() <= 1e-5
    assert np.abs(o["candidate_probability"] - ref.mean(axis=1)).max() <= 1e-5
    with pytest.raises(AiftError, match="patches shape"):
        em(x[:, :2])
    again = keras.models.load_model(out / "model.keras")
    flat = x.reshape(-1, 32, 32, 1)
    assert np.abs(np.asarray(again(flat)) - np.asarray(model(flat))).max() <= 1e-5


def test_export_errors(exported, tmp_path):
    model = exported[0]
    with pytest.raises(AiftError, match="does not exist"):
        export_model(model, tmp_path / "no" / "such" / "dir", patches_per_candidate=M)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):  # running as root: permissions are not enforced
            pytest.skip("cannot make a read-only folder")
        with pytest.raises(AiftError, match="not writable"):
            export_model(model, ro / "out", patches_per_candidate=M)
    finally:
        ro.chmod(0o700)
    with pytest.raises(AiftError, match="patches_per_candidate"):
        export_model(model, tmp_path / "x", patches_per_candidate=0)
    with pytest.raises(AiftError, match="no saved_model"):
        load_exported(tmp_path)
