import numpy as np
import pytest

from aift_tf.errors import AiftError
from aift_tf.finetune import FineTuneConfig

CFG = dict(epochs=1, batch_size=16, learning_rate=2e-3)


def _learner(store, **kw):
    from aift_tf.learner import ActiveLearner

    args = dict(model_name="small_cnn", strategy="aift", learning="ACFT-LQ", seed=0,
                finetune=FineTuneConfig(**CFG), val_split=None)
    args.update(kw)
    return ActiveLearner(store, **args)


def _start(learner, store):
    """Teach a cold-start set with two labels of each class (the learner refuses a one-class set)."""
    pool = learner.unlabeled_ids()
    y = store.labels[pool]
    ids = np.r_[pool[y == 0][:2], pool[y == 1][:2]]
    learner.teach(ids, store.labels[ids])
    return ids


def _flat(model):
    return np.concatenate([w.ravel() for w in model.get_weights()])


def test_loop_save_load_gives_identical_next_query_and_round(tiny_store_path, tmp_path):
    from aift_tf.learner import ActiveLearner
    from aift_tf.store import open_store

    with open_store(tiny_store_path) as store:
        a = _learner(store)
        _start(a, store)
        for _ in range(2):
            ids, scores = a.query(4)
            assert len(ids) == 4 and np.all(np.diff(scores) <= 0)
            a.teach(ids, store.labels[ids])
        assert a.round == 3 and a.labeled_ids.size == 12
        a.save(tmp_path / "state")
        b = ActiveLearner.load(tmp_path / "state", store)
        np.testing.assert_array_equal(_flat(a.model), _flat(b.model))
        qa, qb = a.query(4), b.query(4)
        np.testing.assert_array_equal(qa[0], qb[0])
        np.testing.assert_allclose(qa[1], qb[1], rtol=0, atol=1e-6)
        # the resumed learner continues exactly like the uninterrupted one (optimizer slots, seeds)
        a.teach(qa[0], store.labels[qa[0]])
        b.teach(qb[0], store.labels[qb[0]])
        np.testing.assert_allclose(_flat(a.model), _flat(b.model), rtol=0, atol=1e-6)
        assert a.round == b.round == 4
        assert a.evaluate("test")["auc"] == pytest.approx(b.evaluate("test")["auc"], abs=1e-6)


def test_strategies_and_learning_modes_run(tiny_store_path):
    from aift_tf.store import open_store

    with open_store(tiny_store_path) as store:
        for strategy, learning in [("random", "RFT"), ("entropy@0.25", "AFT"),
                                   ("diversity", "ACFT-Q"), ("margin", "ACFT-HQ")]:
            lr = _learner(store, strategy=strategy, learning=learning)
            m0 = _flat(lr.model)
            _start(lr, store)
            for _ in range(2):
                ids, _ = lr.query(3)
                rec = lr.teach(ids, store.labels[ids])
            assert rec["restart_from_m0"] == (learning in ("RFT", "AFT"))
            expect_train = {"RFT": 10, "AFT": 10, "ACFT-Q": 3}.get(learning)
            if expect_train is not None:
                assert rec["train_candidates"] == expect_train
            assert not np.array_equal(m0, _flat(lr.model))


def test_random_strategy_is_seeded(tiny_store_path):
    from aift_tf.store import open_store

    with open_store(tiny_store_path) as store:
        q1 = _learner(store, strategy="random", seed=5).query(5)[0]
        q2 = _learner(store, strategy="random", seed=5).query(5)[0]
        q3 = _learner(store, strategy="random", seed=6).query(5)[0]
    np.testing.assert_array_equal(q1, q2)
    assert not np.array_equal(q1, q3)


def test_bad_inputs(tiny_store_path, tmp_path):
    from aift_tf.learner import ActiveLearner
    from aift_tf.store import open_store

    with open_store(tiny_store_path) as store:
        lr = _learner(store)
        pool = lr.unlabeled_ids()
        with pytest.raises(AiftError, match="larger than"):
            lr.query(pool.size + 1)
        with pytest.raises(AiftError, match=">= 1"):
            lr.query(0)
        test_id = int(store.ids("test")[0])
        with pytest.raises(AiftError, match=str(test_id)):
            lr.teach([test_id], [0])
        with pytest.raises(AiftError, match="outside"):
            lr.teach([int(pool[0])], [5])
        with pytest.raises(AiftError, match="twice"):
            lr.teach([int(pool[0]), int(pool[0])], [0, 0])
        with pytest.raises(AiftError, match="unknown"):
            _learner(store, strategy="bogus")
        with pytest.raises(AiftError, match="omega"):
            _learner(store, omega=0.5)
        with pytest.raises(AiftError, match="state.json"):
            ActiveLearner.load(tmp_path / "nothing", store)


def test_one_class_labeled_set_is_refused_and_nothing_changes(tiny_store_path):
    from aift_tf.store import open_store

    with open_store(tiny_store_path) as store:
        lr = _learner(store)
        pool = lr.unlabeled_ids()
        neg = pool[store.labels[pool] == 0][:5]
        before = _flat(lr.model)
        with pytest.raises(AiftError, match=r"no candidate of class 1 \(positive\)"):
            lr.teach(neg, store.labels[neg])
        assert lr.round == 0 and lr.labeled_ids.size == 0 and lr.missing_classes() == [0, 1]
        np.testing.assert_array_equal(before, _flat(lr.model))
        _start(lr, store)  # both classes: accepted; later one-class queries are fine (the set has both)
        more = lr.unlabeled_ids()
        more = more[store.labels[more] == 0][:3]
        lr.teach(more, store.labels[more])
        assert lr.round == 2 and lr.missing_classes() == []
