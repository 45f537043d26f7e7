"""Distribution: distribution names, and mirrored scoring/fine-tuning on two logical CPU devices."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from aift_tf.errors import AiftError


def test_names_and_errors(monkeypatch):
    from aift_tf.distribute import get_distribution, distribution_name

    assert distribution_name(get_distribution("none")) == "none"
    with pytest.raises(AiftError, match="unknown distribution strategy"):
        get_distribution("ring")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(AiftError, match="TF_CONFIG"):
        get_distribution("multi-worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(AiftError, match="TF_CONFIG is not valid"):
        get_distribution("multi-worker")


def test_worker_role_and_save_path(monkeypatch, tmp_path):
    from aift_tf.distribute import save_path, worker_role

    cluster = {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
    assert worker_role() == (1, cluster["worker"])
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 2}}))
    with pytest.raises(AiftError, match="index 2 does not name one of the 2 workers"):
        worker_role()
    assert save_path(tmp_path / "state-2", None) == tmp_path / "state-2"  # no multi-worker: the chief's path


SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from aift_tf.distribute import set_logical_cpus, get_distribution, distribution_name
    set_logical_cpus(2)
    from aift_tf.finetune import FineTuneConfig
    from aift_tf.learner import ActiveLearner
    from aift_tf.store import open_store
    cfg = FineTuneConfig(epochs=1, batch_size=16, learning_rate=2e-3)
    out = {}
    with open_store(sys.argv[1]) as store:
        single = ActiveLearner(store, model_name="small_cnn", seed=0, finetune=cfg, val_split=None)
        mirrored = ActiveLearner(store, single.model, seed=0, finetune=cfg, val_split=None, distribute="mirrored")
        out["replicas"] = mirrored.distribution.num_replicas_in_sync
        out["name"] = distribution_name(mirrored.distribution)
        pool = single.unlabeled_ids()
        for bs in (256, 7):
            single.predict_batch_size = mirrored.predict_batch_size = bs
            out[f"score_diff_{bs}"] = float(np.abs(single.predict(pool) - mirrored.predict(pool)).max())
        qs, qm = single.query(6), mirrored.query(6)
        out["same_query"] = bool(np.array_equal(qs[0], qm[0]))
        before = [w.copy() for w in mirrored.model.get_weights()]
        both = np.r_[pool[store.labels[pool] == 0][:2], pool[store.labels[pool] == 1][:2]]  # the learner needs
        ids = np.r_[qm[0], [i for i in both if i not in qm[0]]]  # every class in the labeled set
        rec = mirrored.teach(ids, store.labels[ids])
        after = mirrored.model.get_weights()
        out["changed"] = bool(any(not np.allclose(a, b) for a, b in zip(before, after)))
        out["finite"] = bool(all(np.isfinite(w).all() for w in after) and np.isfinite(rec["finetune"]["loss"]).all())
        cached = ActiveLearner(store, model_name="small_cnn", trainable="head", seed=0, finetune=cfg,
                               val_split=None, distribute="mirrored", cache_trunk=True)
        plain = ActiveLearner(store, model_name="small_cnn", trainable="head", seed=0, finetune=cfg, val_split=None)
        out["cached_diff"] = float(np.abs(cached.predict(pool) - plain.predict(pool)).max())
    print("RESULT " + json.dumps(out))
""")


def test_mirrored_scoring_equals_single_device_and_finetuning_runs(tiny_store_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_ENABLE_ONEDNN_OPTS="0")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tiny_store_path)], capture_output=True, text=True,
                          env=env, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    r = json.loads(lines[-1][7:])
    assert r["replicas"] == 2 and r["name"] == "mirrored"
    assert r["score_diff_256"] <= 1e-5 and r["score_diff_7"] <= 1e-5
    assert r["same_query"]
    assert r["changed"] and r["finite"]
    assert r["cached_diff"] <= 1e-5
