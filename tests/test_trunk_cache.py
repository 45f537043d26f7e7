"""Trunk cache: cached predictions and fine-tuning equal the uncached full-model path."""

import numpy as np
import pytest

from aift_tf.errors import AiftError
from aift_tf.finetune import FineTuneConfig

CFG = dict(epochs=2, batch_size=16, learning_rate=2e-3, balance=True)


def _learner(store, **kw):
    from aift_tf.learner import ActiveLearner

    args = dict(model_name="small_cnn", trainable="head", strategy="aift", learning="ACFT-LQ", seed=0,
                finetune=FineTuneConfig(**CFG), val_split=None)
    args.update(kw)
    return ActiveLearner(store, **args)


@pytest.mark.parametrize("trainable", ["head", "top"])
def test_cached_predictions_and_finetuning_match_uncached(tiny_store_path, tmp_path, trainable):
    from aift_tf.store import open_store

    with open_store(tiny_store_path) as store:
        plain = _learner(store, trainable=trainable)
        cached = _learner(store, trainable=trainable, cache_trunk=True if trainable == "head" else tmp_path)
        pool = plain.unlabeled_ids()
        np.testing.assert_allclose(cached.predict(pool), plain.predict(pool), rtol=0, atol=1e-5)
        ids = pool[:8]
        plain.teach(ids, store.labels[ids])
        cached.teach(ids, store.labels[ids])
        for a, b in zip(plain.model.get_weights(), cached.model.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(cached.predict(pool), plain.predict(pool), rtol=0, atol=1e-5)
        qa, qb = plain.query(4), cached.query(4)
        np.testing.assert_array_equal(qa[0], qb[0])


def test_side_file_is_keyed_and_reused(tiny_store_path, tmp_path, monkeypatch):
    from aift_tf.store import open_store
    from aift_tf.trunk_cache import TrunkCache
    from aift_tf.zoo import build_model, split_frozen

    with open_store(tiny_store_path) as store:
        model = build_model("small_cnn", store.patch_shape, 2, trainable="head", seed=0)
        trunk, rest = split_frozen(model)
        a = TrunkCache(store, trunk, directory=tmp_path)
        assert a.path.is_file() and a.seconds > 0
        b = TrunkCache(store, trunk, directory=tmp_path)  # reused, not recomputed
        assert b.path == a.path and b.seconds == 0.0
        np.testing.assert_array_equal(a.read([5, 1, 5]), b.read([5, 1, 5]))
        other = build_model("small_cnn", store.patch_shape, 2, trainable="head", seed=1)
        c = TrunkCache(store, split_frozen(other)[0], directory=tmp_path)  # other trunk weights, other key
        assert c.key != a.key and c.path != a.path
        mem = TrunkCache(store, trunk)
        np.testing.assert_allclose(mem.read(np.arange(store.n)), a.read(np.arange(store.n)), rtol=0, atol=0)


def test_save_load_keeps_cache_and_continues_identically(tiny_store_path, tmp_path):
    from aift_tf.learner import ActiveLearner
    from aift_tf.store import open_store

    with open_store(tiny_store_path) as store:
        a = _learner(store, cache_trunk=True)
        pool = a.unlabeled_ids()
        ids = np.r_[pool[store.labels[pool] == 0][:2], pool[store.labels[pool] == 1][:2]]  # both classes
        a.teach(ids, store.labels[ids])
        a.save(tmp_path / "s")
        b = ActiveLearner.load(tmp_path / "s", store)
        from aift_tf.trunk_cache import TrunkCache

        assert b.cache_trunk is True and isinstance(b.source, TrunkCache) and b.network is not b.model
        ids, _ = a.query(4)
        idb, _ = b.query(4)
        np.testing.assert_array_equal(ids, idb)
        a.teach(ids, store.labels[ids])
        b.teach(ids, store.labels[ids])
        for x, y in zip(a.model.get_weights(), b.model.get_weights()):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_cache_trunk_refusals(tiny_store_path):
    from aift_tf.store import open_store

    with open_store(tiny_store_path) as store:
        with pytest.raises(AiftError, match="trainable in"):
            _learner(store, trainable="all", cache_trunk=True)
        with pytest.raises(AiftError, match="augment"):
            _learner(store, cache_trunk=True, finetune=FineTuneConfig(**CFG, augment=True))
