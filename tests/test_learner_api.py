"""ActiveLearner: get_config/from_config, save/load through the config (and old states), relabel/forget,
query overrides and the Query record."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from aift_tf.errors import AiftError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_learner import _flat, _learner, _start  # noqa: E402  (the same tiny learner and cold start)


def test_get_config_from_config_round_trip(tiny_store_path, tmp_path):
    from aift_tf.learner import ActiveLearner
    from aift_tf.store import open_store

    with open_store(tiny_store_path) as store:
        a = _learner(store, trainable="head", strategy="entropy@0.5", learning="ACFT-Q", omega=2,
                     max_per_group=3, cache_trunk=tmp_path / "cache", predict_batch_size=64, val_split="val")
        cfg = a.get_config()
        assert json.loads(json.dumps(cfg)) == cfg  # JSON-able
        assert set(cfg) == {"model_name", "weights", "trainable", "strategy", "learning", "omega", "finetune",
                            "seed", "pool_split", "val_split", "predict_batch_size", "cache_trunk", "max_per_group"}
        assert cfg["cache_trunk"] == str(tmp_path / "cache") and cfg["finetune"]["epochs"] == 1
        b = ActiveLearner.from_config(cfg, store)
        assert b.get_config() == cfg
        np.testing.assert_array_equal(_flat(a.model), _flat(b.model))  # same seeded M0
        c = ActiveLearner.from_config(cfg, store, cache_trunk=False, progress=lambda *a: None)
        assert c.get_config() == {**cfg, "cache_trunk": False}
        with pytest.raises(AiftError, match="unknown learner option 'bogus'"):
            ActiveLearner.from_config({**cfg, "bogus": 1}, store)



def test_finetune_settings_are_learner_finetune_not_config(tiny_store_path):
    """``learner.finetune`` is the FineTuneConfig (the constructor's ``finetune``); ``learner.config``, which
    collided with ``get_config()``, is a deprecated alias for one release."""
    from aift_tf.finetune import FineTuneConfig
    from aift_tf.store import open_store

    with open_store(tiny_store_path) as store:
        a = _learner(store, trainable="head")
        assert isinstance(a.finetune, FineTuneConfig)
        assert a.get_config()["finetune"] == a.finetune.to_dict()
        with pytest.warns(DeprecationWarning, match="use ActiveLearner.finetune"):
            assert a.config is a.finetune

def test_save_load_goes_through_the_config(tiny_store_path, tmp_path):
    from aift_tf.learner import ActiveLearner
    from aift_tf.store import open_store

    with open_store(tiny_store_path) as store:
        a = _learner(store, strategy="entropy", omega=1.5)
        _start(a, store)
        a.save(tmp_path / "s")
        state = json.loads((tmp_path / "s" / "state.json").read_text())
        assert state["config"] == a.get_config()
        assert state["round"] == 1 and state["strategy"] == "entropy"  # the old fields are still there
        b = ActiveLearner.load(tmp_path / "s", store)
        assert b.get_config() == a.get_config() and b.round == 1
        # the config wins over the top-level copies of the settings
        state["strategy"] = "random"
        (tmp_path / "s" / "state.json").write_text(json.dumps(state))
        assert ActiveLearner.load(tmp_path / "s", store).strategy == "entropy"


def test_a_state_in_the_old_layout_still_loads(tiny_store_path, tmp_path):
    from aift_tf.learner import ActiveLearner
    from aift_tf.store import open_store

    with open_store(tiny_store_path) as store:
        a = _learner(store, strategy="aift", omega=2.0)
        _start(a, store)
        a.save(tmp_path / "s")
        f = tmp_path / "s" / "state.json"
        state = json.loads(f.read_text())
        for key in ("config", "relabeled_ids", "max_per_group", "cache_trunk"):  # what older states lacked
            del state[key]
        f.write_text(json.dumps(state))
        b = ActiveLearner.load(tmp_path / "s", store)
        assert b.get_config() == a.get_config()
        np.testing.assert_array_equal(b.labeled_ids, a.labeled_ids)
        qa, qb = a.query(4), b.query(4)
        np.testing.assert_array_equal(qa.ids, qb.ids)
        a.teach(qa.ids, store.labels[qa.ids])
        b.teach(qb.ids, store.labels[qb.ids])
        np.testing.assert_allclose(_flat(a.model), _flat(b.model), rtol=0, atol=1e-6)


def test_relabel_trains_the_new_label_on_the_next_teach(tiny_store_path, tmp_path):
    from aift_tf.learner import ActiveLearner
    from aift_tf.store import open_store

    with open_store(tiny_store_path) as store:
        lr = _learner(store, learning="ACFT-Q")
        first = _start(lr, store)
        flip = int(first[0])
        old = int(store.labels[flip])
        lr.relabel([flip], [1 - old])
        pos = int(np.flatnonzero(lr.labeled_ids == flip)[0])
        assert lr.labeled_labels[pos] == 1 - old and lr.relabeled_ids.tolist() == [flip]
        lr.save(tmp_path / "s")  # a pending relabel survives save/load
        assert ActiveLearner.load(tmp_path / "s", store).relabeled_ids.tolist() == [flip]
        ids, _ = lr.query(3)
        rec = lr.teach(ids, store.labels[ids])
        # ACFT-Q trains the new queries only: the relabeled candidate is trained as one of them
        assert rec["train_candidates"] == 4 and rec["relabeled"] == 1 and rec["new"] == 3
        assert lr.labeled_round[pos] == 2 and lr.relabeled_ids.size == 0
        assert lr.labeled_ids.size == 7
        lr.relabel([flip], [old])
        rec = lr.teach([], [])  # the correction alone
        assert rec["train_candidates"] == 1 and rec["new"] == 0 and lr.round == 3
        with pytest.raises(AiftError, match="teach needs at least one labeled candidate"):
            lr.teach([], [])
        unlabeled = int(lr.unlabeled_ids()[0])
        with pytest.raises(AiftError, match=f"candidate id {unlabeled} is not labeled"):
            lr.relabel([unlabeled], [0])
        with pytest.raises(AiftError, match="outside the classes"):
            lr.relabel([flip], [7])
        with pytest.raises(AiftError, match="appears twice"):
            lr.relabel([flip, flip], [0, 0])


def test_forget_makes_candidates_unlabeled(tiny_store_path):
    from aift_tf.store import open_store

    with open_store(tiny_store_path) as store:
        lr = _learner(store)
        first = _start(lr, store)
        lr.relabel(first[:1], [1 - int(store.labels[first[0]])])
        lr.forget(first[:2])
        assert lr.labeled_ids.tolist() == first[2:].tolist() and lr.labeled_round.tolist() == [1, 1]
        assert lr.relabeled_ids.size == 0 and set(first[:2].tolist()) <= set(lr.unlabeled_ids().tolist())
        with pytest.raises(AiftError, match=f"candidate id {int(first[0])} is not labeled"):
            lr.forget(first[:1])
        rec = lr.teach(first[:2], store.labels[first[:2]])  # taught again
        assert rec["labels"] == 4


def test_query_overrides_and_record(tiny_store_path):
    from aift_tf.learner import Query
    from aift_tf.store import open_store

    with open_store(tiny_store_path) as store:
        lr = _learner(store, strategy="aift")
        _start(lr, store)
        before = lr.rng.bit_generator.state
        q = lr.query(3, strategy="random", omega=2, rng_seed=[0, 5])
        assert isinstance(q, Query) and q.probabilities is None and q.seconds >= 0
        assert lr.rng.bit_generator.state == before and lr.strategy == "aift" and lr.omega == 1.0
        np.testing.assert_array_equal(q.ids, lr.query(3, strategy="random", omega=2, rng_seed=[0, 5]).ids)
        # the same as swapping the learner's settings by hand (what aift_tf.project used to do)
        lr.strategy, lr.omega, lr.rng = "random", 2.0, np.random.default_rng([0, 5])
        ids, scores = lr.query(3)
        np.testing.assert_array_equal(ids, q.ids)
        np.testing.assert_array_equal(scores, q.scores)
        lr.strategy, lr.omega = "aift", 1.0
        pool = lr.unlabeled_ids()[::2]
        qp = lr.query(4, pool=np.r_[pool, lr.labeled_ids[:1]])  # labeled ids of the pool are skipped
        assert set(qp.ids.tolist()) <= set(pool.tolist())
        assert qp.probabilities.shape == (4, store.m, 2)
        np.testing.assert_allclose(qp.probabilities, lr.predict(qp.ids), rtol=0, atol=1e-5)
        ids, scores = qp
        assert len(qp) == 2 and qp[0] is qp.ids and qp[1] is qp.scores and ids is qp.ids
        test_id = int(store.ids("test")[0])
        with pytest.raises(AiftError, match=f"candidate id {test_id} is not in the 'train' pool"):
            lr.query(1, pool=[test_id])
        with pytest.raises(AiftError, match="larger than the 2 unlabeled"):
            lr.query(3, pool=pool[:2])
        with pytest.raises(AiftError, match="omega must be a number >= 1; got 0.5"):
            lr.query(1, omega=0.5)
        with pytest.raises(AiftError, match="unknown"):
            lr.query(1, strategy="bogus")
        with pytest.raises(AiftError, match="rng_seed"):
            lr.query(1, rng_seed="x")
