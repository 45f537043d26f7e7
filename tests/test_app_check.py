"""simulate.app_check: full training with the real library on a tiny store written here."""

import math

import numpy as np
import pytest

from aift_tf.errors import AiftError


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    from aift_tf.store import write_store

    rng = np.random.default_rng(0)
    n, m = 36, 2
    labels = np.array([1, 0, 0] * (n // 3), dtype=np.int64)
    patches = rng.integers(0, 120, size=(n, m, 32, 32, 3)).astype(np.uint8)
    patches[labels == 1, :, 12:20, 12:20, :] = 230  # a learnable bright centre
    groups = np.arange(n) // 4
    split = np.where(groups < 5, "train", np.where(groups < 6, "val", "test"))
    path = tmp_path_factory.mktemp("app_check") / "tiny.h5"
    write_store(path, patches, labels, groups, split, app="tiny", class_names=["neg", "pos"], attrs={})
    return path


def test_full_training_auc_keys_and_finite(tiny_store):
    from simulate.app_check import full_training_auc

    r = full_training_auc("pulmonary-embolism", epochs=1, weights="m0", store=tiny_store)
    for k in ("app", "scale", "seed", "model", "weights", "epochs", "train_candidates", "test_candidates",
              "test_positives", "test_auc", "val_auc", "train_auc", "train_seconds", "seconds", "store"):
        assert k in r
    assert r["weights"] == "m0" and r["epochs"] == 1 and r["train_candidates"] == 20
    assert math.isfinite(r["test_auc"]) and 0.0 <= r["test_auc"] <= 1.0
    assert math.isfinite(r["train_auc"]) and 0.0 <= r["train_auc"] <= 1.0


def test_bad_weights(tiny_store):
    from simulate.app_check import full_training_auc

    with pytest.raises(AiftError):
        full_training_auc("pulmonary-embolism", epochs=1, weights="imagenet", store=tiny_store)
