import numpy as np
import pytest

from aift_tf.errors import AiftError
from aift_tf.finetune import FineTuneConfig, LEARNING_STRATEGIES, check_learning, learning_plan


def test_learning_plan_covers_table2():
    new, labeled, mis = [7, 8], [1, 2, 3, 7, 8], [2, 7]
    ids, restart = learning_plan("RFT", new, labeled)
    assert ids.tolist() == labeled and restart
    ids, restart = learning_plan("AFT", new, labeled)
    assert ids.tolist() == labeled and restart
    ids, restart = learning_plan("ACFT-Q", new, labeled)
    assert ids.tolist() == new and not restart
    ids, restart = learning_plan("ACFT-LQ", new, labeled)
    assert ids.tolist() == labeled and not restart
    ids, restart = learning_plan("ACFT-HQ", new, labeled, mis)
    assert sorted(ids.tolist()) == [2, 7, 8] and not restart


def test_learning_names_and_errors():
    assert check_learning("acft_lq") == "ACFT-LQ"
    assert set(LEARNING_STRATEGIES) == {"RFT", "AFT", "ACFT-Q", "ACFT-LQ", "ACFT-HQ"}
    with pytest.raises(AiftError, match="'BOGUS'"):
        check_learning("BOGUS")
    with pytest.raises(AiftError, match="misclassifies"):
        learning_plan("ACFT-HQ", [1], [1])


@pytest.mark.parametrize("kw,needle", [
    ({"epochs": 0}, "epochs"), ({"batch_size": 0}, "batch size"),
    ({"learning_rate": -1.0}, "learning rate"), ({"optimizer": "adagradx"}, "adagradx"),
])
def test_config_validation(kw, needle):
    with pytest.raises(AiftError, match=needle):
        FineTuneConfig(**kw)


def test_config_round_trip():
    cfg = FineTuneConfig(epochs=2, patience=3, optimizer="sgd")
    assert FineTuneConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(AiftError, match="nonsense"):
        FineTuneConfig.from_dict({"nonsense": 1})


def test_fine_tune_reduces_loss_on_separable_set(tiny_store_path):
    from aift_tf.finetune import compile_model, fine_tune
    from aift_tf.store import open_store
    from aift_tf.zoo import build_model

    with open_store(tiny_store_path) as store:
        ids = store.ids("train")
        cfg = FineTuneConfig(epochs=4, batch_size=16, learning_rate=3e-3, balance=False)
        model = build_model("small_cnn", input_shape=store.patch_shape, num_classes=2, seed=0)
        compile_model(model, cfg)
        hist = fine_tune(model, store, ids, store.labels[ids], cfg, val_ids=store.ids("val"))
        assert hist["epochs"] == 4
        assert hist["loss"][-1] < hist["loss"][0]
        assert len(hist["val_auc"]) == 4


def test_fine_tune_is_repeatable(tiny_store_path):
    from aift_tf.finetune import compile_model, fine_tune
    from aift_tf.store import open_store
    from aift_tf.zoo import build_model

    outs = []
    with open_store(tiny_store_path) as store:
        ids = store.ids("train")[:20]
        for _ in range(2):
            cfg = FineTuneConfig(epochs=1, batch_size=16, seed=3)
            model = build_model("small_cnn", input_shape=store.patch_shape, num_classes=2, seed=0)
            compile_model(model, cfg)
            fine_tune(model, store, ids, store.labels[ids], cfg)
            outs.append(np.concatenate([w.ravel() for w in model.get_weights()]))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_reset_optimizer_keeps_learning_rate():
    """Regression: Keras 3 keeps the learning rate in optimizer.variables; a restart from M0 must
    zero the slots and the step counter only, or RFT/AFT rounds silently stop learning."""
    import keras

    from aift_tf.finetune import compile_model, reset_optimizer

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    compile_model(model, FineTuneConfig(learning_rate=3e-3))
    model.fit(np.ones((8, 3), "float32"), np.array([0, 1] * 4), epochs=2, verbose=0)
    assert int(model.optimizer.iterations.numpy()) > 0
    reset_optimizer(model)
    assert int(model.optimizer.iterations.numpy()) == 0
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(3e-3)
    slots = [v for v in model.optimizer.variables if "momentum" in v.path or "velocity" in v.path]
    assert slots and all(not np.any(v.numpy()) for v in slots)


def test_restart_from_m0_still_learns(tiny_store_path):
    from aift_tf.learner import ActiveLearner
    from aift_tf.store import open_store

    with open_store(tiny_store_path) as store:
        pool = store.ids("train")
        lr = ActiveLearner(store, strategy="random", learning="RFT", seed=0, val_split=None,
                           finetune=FineTuneConfig(epochs=3, batch_size=16, learning_rate=3e-3))
        rec = lr.teach(pool[:10], store.labels[pool[:10]])
        rec = lr.teach(pool[10:], store.labels[pool[10:]])  # second round restarts from M0
        assert rec["restart_from_m0"]
        loss = rec["finetune"]["loss"]
        assert loss[-1] < 0.8 * loss[0]


@pytest.mark.parametrize("train_batchnorm", [False, True])
def test_batchnorm_stays_in_inference_mode_while_fine_tuning(tiny_store_path, tmp_path, train_batchnorm):
    """Keras's transfer-learning recipe: BatchNorm layers keep M0's statistics (and run in inference
    mode) while fine-tuning, unless train_batchnorm is asked for (training from scratch)."""
    import keras

    from aift_tf.finetune import compile_model, fine_tune
    from aift_tf.store import open_store
    from aift_tf.zoo import build_model, model_config

    with open_store(tiny_store_path) as store:
        model = build_model("small_cnn", store.patch_shape, 2, trainable="all", seed=0,
                            train_batchnorm=train_batchnorm)
        bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
        assert bns and all(layer.trainable is train_batchnorm for layer in bns)
        others = [layer for layer in model.layers if layer.weights and layer not in bns]
        assert all(layer.trainable for layer in others)
        before = [[np.array(w) for w in layer.get_weights()] for layer in bns]
        cfg = FineTuneConfig(epochs=2, batch_size=16, learning_rate=1e-2, seed=0)
        compile_model(model, cfg)
        pool = store.ids("train")[:20]
        fine_tune(model, store, pool, store.labels[pool], cfg)
        after = [[np.array(w) for w in layer.get_weights()] for layer in bns]
        same = all(np.array_equal(a, b) for x, y in zip(before, after) for a, b in zip(x, y))
        assert same is (not train_batchnorm)  # gamma, beta, moving mean and variance all untouched
        x = store.read_float(pool[:4]).reshape((-1,) + tuple(store.patch_shape))
        if not train_batchnorm:  # frozen BatchNorm: training=True gives the inference output (no dropout in BN)
            model.get_layer("head_dropout").rate = 0.0
            np.testing.assert_allclose(model(x, training=True), model(x, training=False), atol=1e-5)
        model.save(tmp_path / "m.keras")
        again = keras.models.load_model(tmp_path / "m.keras")
        cfg2 = model_config(again)
        assert cfg2["trainable"] == "all" and cfg2["train_batchnorm"] is train_batchnorm


def test_early_stopping_on_validation_loss(tiny_store_path):
    from aift_tf.finetune import compile_model, fine_tune
    from aift_tf.store import open_store
    from aift_tf.zoo import build_model

    with pytest.raises(AiftError, match="monitor must be one of val_auc, val_loss; got 'val_acc'"):
        FineTuneConfig(monitor="val_acc")
    with open_store(tiny_store_path) as store:
        model = build_model("small_cnn", store.patch_shape, 2, trainable="top", seed=0)
        cfg = FineTuneConfig(epochs=6, batch_size=16, learning_rate=1e-2, patience=1, monitor="val_loss", seed=0)
        compile_model(model, cfg)
        pool, val = store.ids("train"), store.ids("test")  # any labeled split with both classes will do
        h = fine_tune(model, store, pool, store.labels[pool], cfg, val_ids=val)
        assert len(h["val_loss"]) == h["epochs"] == len(h["val_auc"]) and all(v > 0 for v in h["val_loss"])
        assert h["best_val_loss"] == min(h["val_loss"]) and h["best_epoch"] == int(np.argmin(h["val_loss"])) + 1
        if h["epochs"] < 6:  # stopped: the epoch after the best did not improve
            assert h["val_loss"][-1] >= h["best_val_loss"]
