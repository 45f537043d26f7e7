"""Patch sources: the store's patches and the trunk cache's features feed the same pipelines."""

import numpy as np
import pytest

from aift_tf.errors import AiftError


def _model_and_cache(store, trainable="head"):
    from aift_tf.trunk_cache import TrunkCache
    from aift_tf.zoo import build_model, split_frozen

    model = build_model("small_cnn", store.patch_shape, store.num_classes, trainable=trainable, seed=0)
    trunk, rest = split_frozen(model)
    return model, trunk, rest, TrunkCache(store, trunk)


def test_store_source_matches_the_store(tiny_store_path):
    from aift_tf.sources import PatchSource, StoreSource, as_source
    from aift_tf.store import open_store

    with open_store(tiny_store_path) as store:
        src = as_source(store)
        assert isinstance(src, StoreSource) and isinstance(src, PatchSource) and as_source(src) is src
        assert (src.n, src.m, src.example_shape, src.num_classes) == (store.n, store.m, tuple(store.patch_shape), 2)
        assert src.dtype == np.uint8 and src.name == str(store.path)
        np.testing.assert_array_equal(src.read([3, 1]), store.read([3, 1]))
        np.testing.assert_array_equal(src.read_float([3, 1]), store.read_float([3, 1]))
        np.testing.assert_array_equal(src.labels, store.labels)
        blocks = list(src.blocks(np.array([5, 2, 7]), 2))
        assert [b.shape[0] for b in blocks] == [2 * store.m, store.m]
        np.testing.assert_array_equal(np.concatenate(blocks), store.read([5, 2, 7]).reshape((-1,) + src.example_shape))
        with pytest.raises(AiftError, match=r"candidate id 999 is out of range"):
            src.check_ids([0, 999])
        with pytest.raises(AiftError, match="expected a candidate store or a patch source, got int"):
            as_source(3)


@pytest.mark.parametrize("trainable", ["head", "top"])
def test_both_sources_give_the_same_predictions(tiny_store_path, trainable):
    from aift_tf.pipelines import predict_candidates
    from aift_tf.sources import PatchSource
    from aift_tf.store import open_store

    with open_store(tiny_store_path) as store:
        model, trunk, rest, cache = _model_and_cache(store, trainable)
        assert isinstance(cache, PatchSource) and cache.dtype == np.float32
        assert cache.example_shape == tuple(int(v) for v in trunk.output_shape[1:])
        ids = np.array([7, 0, 3, 3, 40, 11])
        seen = []
        a = predict_candidates(model, store, ids, batch_size=5)
        b = predict_candidates(rest, cache, ids, batch_size=5, progress=lambda d, t: seen.append((d, t)))
        assert a.shape == b.shape == (ids.size, store.m, 2)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
        assert seen[-1] == (ids.size, ids.size)
        assert predict_candidates(rest, cache, []).shape == (0, store.m, 2)
        with pytest.raises(AiftError, match="out of range"):
            predict_candidates(rest, cache, [store.n])


def test_both_sources_give_the_same_training_batches(tiny_store_path):
    import tensorflow as tf

    from aift_tf.pipelines import training_dataset
    from aift_tf.store import open_store

    with open_store(tiny_store_path) as store:
        model, trunk, rest, cache = _model_and_cache(store)
        ids = np.array([0, 1, 5, 9, 12])
        labels = store.labels[ids]
        for kw in (dict(balance=True), dict(shuffle=False), dict()):
            xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in training_dataset(store, ids, labels, batch_size=6,
                                                                                 seed=3, **kw)])
            fs, gs = zip(*[(x.numpy(), y.numpy()) for x, y in training_dataset(cache, ids, labels, batch_size=6,
                                                                                 seed=3, **kw)])
            np.testing.assert_array_equal(np.concatenate(ys), np.concatenate(gs))
            for x, f in zip(xs, fs):  # the same patches, in the same order
                np.testing.assert_allclose(np.asarray(trunk(tf.constant(x), training=False)), f, rtol=0, atol=1e-5)
        with pytest.raises(AiftError, match="cache_trunk cannot be used with augment=True"):
            training_dataset(cache, ids, labels, augment=True)
        with pytest.raises(AiftError, match=r"label 2 of candidate 1 is not a class index in \[0, 1\]"):
            training_dataset(cache, [0, 1], [0, 2])


def test_fine_tune_on_either_source_gives_the_same_weights(tiny_store_path):
    from aift_tf.finetune import FineTuneConfig, compile_model, fine_tune
    from aift_tf.store import open_store
    from aift_tf.zoo import split_frozen

    cfg = FineTuneConfig(epochs=1, batch_size=8, learning_rate=2e-3)
    with open_store(tiny_store_path) as store:
        plain, _, _, _ = _model_and_cache(store)
        cached, _, rest, cache = _model_and_cache(store)
        assert split_frozen(cached)[1] is not cached
        compile_model(plain, cfg)
        compile_model(cached, cfg)
        rest.compile(optimizer=cached.optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                     jit_compile=False)
        ids = store.ids("train")[:10]
        val = store.ids("val")
        ha = fine_tune(plain, store, ids, store.labels[ids], cfg, val_ids=val)
        hb = fine_tune(rest, cache, ids, store.labels[ids], cfg, val_ids=val)
        assert ha["patches"] == hb["patches"] == 10 * store.m
        np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=1e-4)
        for a, b in zip(plain.get_weights(), cached.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
        with pytest.raises(AiftError, match="augment=True"):
            fine_tune(rest, cache, ids, store.labels[ids], FineTuneConfig(epochs=1, augment=True))
