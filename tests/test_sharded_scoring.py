"""Sharded scoring: shares partition the pool, 3 shard processes + merge give the unsharded selection,
and a missing/doubled shard or stale scores are one-line errors."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aift_tf import scoring
from aift_tf.errors import AiftError

from conftest import make_separable_arrays


ROOT = Path(__file__).resolve().parents[1]


def _env(tmp_path=None):
    """The environment of the subprocesses: this checkout's code first, TensorFlow quiet."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_ENABLE_ONEDNN_OPTS="0", PYTHONPATH=path)


def _aift(args, tmp_path, check=True):
    proc = subprocess.run([sys.executable, "-m", "aift_tf.cli", *map(str, args)], capture_output=True, text=True,
                          env=_env(tmp_path), timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    """A 16-px store and a learner state after one teach round (so the pool excludes labeled ids)."""
    from aift_tf.finetune import FineTuneConfig
    from aift_tf.learner import ActiveLearner
    from aift_tf.store import open_store, write_store
    from aift_tf.zoo import build_model

    d = tmp_path_factory.mktemp("shards")
    a = make_separable_arrays(n=60, m=4, size=16)
    store_path = d / "tiny16.h5"
    write_store(store_path, a["patches"], a["labels"], a["groups"], a["split"], app="tiny-test",
                class_names=["negative", "positive"])
    with open_store(store_path) as store:
        model = build_model("small_cnn", store.patch_shape, 2, seed=0, dropout=0.0, filters=(8, 16, 16, 16))
        learner = ActiveLearner(store, model, seed=0, val_split=None,
                                finetune=FineTuneConfig(epochs=1, steps_per_epoch=2, batch_size=16))
        pool = learner.unlabeled_ids()
        ids = np.r_[pool[store.labels[pool] == 0][:3], pool[store.labels[pool] == 1][:2]]
        learner.teach(ids, store.labels[ids])
        learner.save(d / "state")
    return d, store_path, d / "state"


def test_shares_partition_the_pool():
    pool = np.array([3, 9, 10, 11, 17, 20, 21, 40, 41, 42, 57], dtype=np.int64)
    for mode in scoring.SHARD_MODES:
        for n in (1, 2, 3, 5):
            parts = [scoring.shard_ids(pool, i, n, mode) for i in range(n)]
            assert np.array_equal(np.sort(np.concatenate(parts)), pool), (mode, n)
    assert scoring.shard_ids(pool, 0, 3).tolist() == [3, 9, 10, 11]  # contiguous blocks in id order
    # hashed shares do not move when other candidates leave the pool (labeled meanwhile)
    assert set(scoring.shard_ids(pool[2:], 1, 3, "hash")) <= set(scoring.shard_ids(pool, 1, 3, "hash"))
    assert scoring.parse_shard(" 2/3 ") == (2, 3)
    for bad in ("3/3", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(AiftError, match="shard"):
            scoring.parse_shard(bad)
    with pytest.raises(AiftError, match="unknown shard mode"):
        scoring.shard_ids(pool, 0, 2, "random")


@pytest.mark.slow
def test_three_shard_processes_give_the_unsharded_selection(state):
    from aift_tf.learner import ActiveLearner
    from aift_tf.selection import strategy_scores
    from aift_tf.store import open_store

    d, store_path, state_path = state
    procs = [subprocess.Popen([sys.executable, "-m", "aift_tf.cli", "score", str(store_path), "--model",
                               str(state_path), "--shard", f"{i}/3", "--out", str(d / f"part-{i}.h5"), "--quiet"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(d))
             for i in range(3)]
    try:
        for p in procs:
            _, err = p.communicate(timeout=240)
            assert p.returncode == 0, err[-2000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    parts = [d / f"part-{i}.h5" for i in range(3)]
    _aift(["score", "--merge", *parts, "--out", d / "scores.h5", "--quiet"], d)
    merged = scoring.read_scores(d / "scores.h5")
    sizes = [scoring.read_scores(p).ids.size for p in parts]
    with open_store(store_path) as store:
        sharded = ActiveLearner.load(state_path, store)
        plain = ActiveLearner.load(state_path, store)
        pool = plain.unlabeled_ids()
        assert np.array_equal(merged.ids, pool) and sum(sizes) == pool.size and min(sizes) > 0
        probs = plain.predict(pool)
        # separate processes, other batch boundaries: float32 rounding only
        assert np.abs(merged.probs - probs).max() <= 1e-5
        assert np.allclose(merged.worth, strategy_scores(probs, "aift"), atol=1e-5)
        ids_s, worth_s = sharded.query(7, scores=scoring.read_scores(d / "scores.h5"))
        ids_p, worth_p = plain.query(7)
        assert ids_s.tolist() == ids_p.tolist()
        assert np.allclose(worth_s, worth_p, atol=1e-5)
        # after a teach the pool and the model changed: the old scores are refused, one line each
        both = np.r_[ids_p, pool[store.labels[pool] == 1][:1]]
        plain.teach(np.unique(both), store.labels[np.unique(both)])
        with pytest.raises(AiftError, match="another model") as e:
            plain.query(3, scores=d / "scores.h5")
        assert "\n" not in str(e.value)


def test_merge_refuses_missing_and_doubled_shards(state, tmp_path):
    d, store_path, state_path = state
    for i in range(2):  # a two-shard split of the pool (in-process: only the writing is under test)
        scoring.score_shard(store_path, state_path, tmp_path / f"part-{i}.h5", shard=(i, 2), mode="hash")
    p0, p1 = tmp_path / "part-0.h5", tmp_path / "part-1.h5"
    missing = _aift(["score", "--merge", p0, "--out", tmp_path / "s.h5"], tmp_path, check=False)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "is in no part" in missing.stderr and "shards given: 0 of 2" in missing.stderr
    twice = _aift(["score", "--merge", p0, p1, p0, "--out", tmp_path / "s.h5"], tmp_path, check=False)
    assert twice.returncode == 2 and "given twice" in twice.stderr and twice.stderr.count("\n") == 1
    assert not (tmp_path / "s.h5").exists()
    ok = _aift(["score", "--merge", p1, p0, "--out", tmp_path / "s.h5", "--strategy", "entropy"], tmp_path)
    assert "merged 2 part(s)" in ok.stdout
    s = scoring.read_scores(tmp_path / "s.h5")
    assert s.kind == "merged" and s.attrs["strategy"] == "entropy" and np.all(s.ids[1:] > s.ids[:-1])
    with pytest.raises(AiftError, match="not a shard part"):
        scoring.merge_shards([tmp_path / "s.h5"], tmp_path / "again.h5")
    with pytest.raises(AiftError, match="merge the parts first"):
        scoring.pool_probabilities(scoring.read_scores(p0), s.ids)
    with pytest.raises(AiftError, match="has no score"):
        scoring.pool_probabilities(s, np.r_[s.ids, 10**6])
    with pytest.raises(AiftError, match="not in the unlabeled pool"):
        scoring.pool_probabilities(s, s.ids[1:])
    bad = _aift(["score", store_path, "--model", state_path, "--shard", "2/2", "--out", tmp_path / "x.h5"],
                tmp_path, check=False)
    assert bad.returncode == 2 and "0 <= i < N" in bad.stderr and not (tmp_path / "x.h5").exists()


def test_shard_from_tf_config(state, tmp_path):
    """``--shard tf-config``: a multi-worker node scores the share of its task index (in-process CLI)."""
    import json

    from click.testing import CliRunner

    from aift_tf.score_cli import score

    d, store_path, state_path = state
    tf_config = json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]},
                            "task": {"type": "worker", "index": 2}})
    res = CliRunner().invoke(score, [str(store_path), "--model", str(state_path), "--shard", "tf-config", "--hash",
                                     "--out", str(tmp_path / "p.h5"), "--quiet"], env={"TF_CONFIG": tf_config})
    assert res.exit_code == 0, res.output
    part = scoring.read_scores(tmp_path / "p.h5")
    assert (part.attrs["shard_index"], part.attrs["shard_count"], part.attrs["shard_mode"]) == (2, 3, "hash")
    assert np.array_equal(part.ids, scoring.shard_ids(part.pool_ids, 2, 3, "hash"))
