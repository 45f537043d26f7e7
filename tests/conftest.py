import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def make_separable_arrays(n=48, m=4, size=32, channels=3, pos_fraction=0.3, seed=0, groups=8):
    """A tiny, clearly separable binary candidate set: positives carry a bright centre blob.

    Returns a dict accepted by `aift_tf.store.write_store` (keyword form). Groups are assigned in
    blocks so that a split by group exists: the last quarter of the groups is the test split, one
    group before it the validation split.
    """
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < pos_fraction).astype(np.int64)
    labels[:2] = [0, 1]  # both classes always present
    yy, xx = np.mgrid[:size, :size]
    patches = rng.normal(90, 20, size=(n, m, size, size, channels))
    for i in np.flatnonzero(labels):
        for j in range(m):
            cy, cx = size / 2 + rng.integers(-3, 4, size=2)
            blob = 120 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 8) ** 2))
            patches[i, j] += blob[..., None]
    patches = np.clip(patches, 0, 255).astype(np.uint8)
    group = np.arange(n) * groups // n
    split = np.where(group >= groups - max(1, groups // 4), "test",
                     np.where(group == groups - max(1, groups // 4) - 1, "val", "train"))
    return dict(patches=patches, labels=labels, groups=group.astype(np.int64), split=split)


@pytest.fixture
def tiny_store_path(tmp_path):
    """Path of a freshly written tiny separable store (32×32×3, m=4, 48 candidates)."""
    from aift_tf.store import write_store

    a = make_separable_arrays()
    path = tmp_path / "tiny.h5"
    write_store(path, a["patches"], a["labels"], a["groups"], a["split"],
                app="tiny-test", class_names=["negative", "positive"])
    return path


def make_multiclass_arrays(k=5, n=80, m=2, size=16, channels=1, seed=0, groups=10, mix=None, absent_from_test=()):
    """A tiny K-class candidate set: class c > 0 carries a bright blob at its own position (class 0 none).

    Every class has candidates in every split (the first ``3 k`` candidates cycle through the classes and are
    spread over the groups). ``mix`` (K probabilities) sets the class mix of the others; default uniform.
    Keyword form for `aift_tf.store.write_store`, as :func:`make_separable_arrays`.
    """
    rng = np.random.default_rng(seed)
    p = np.full(k, 1.0 / k) if mix is None else np.asarray(mix, dtype=np.float64) / np.sum(mix)
    labels = rng.choice(k, size=n, p=p).astype(np.int64)
    group = np.arange(n) * groups // n
    n_test = max(1, groups // 4)
    split = np.where(group >= groups - n_test, "test", np.where(group == groups - n_test - 1, "val", "train"))
    for s in ("train", "val", "test"):  # every class in every split
        where = np.flatnonzero(split == s)
        labels[where[:k]] = np.arange(k)[: where[:k].size]
    for c in absent_from_test:
        labels[(split == "test") & (labels == c)] = 0
    yy, xx = np.mgrid[:size, :size]
    patches = rng.normal(80, 15, size=(n, m, size, size, channels))
    angle = 2 * np.pi * np.arange(k) / max(k - 1, 1)
    for i in np.flatnonzero(labels > 0):
        c = labels[i]
        cy, cx = size / 2 + size / 4 * np.sin(angle[c]), size / 2 + size / 4 * np.cos(angle[c])
        for j in range(m):
            blob = 140 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 10) ** 2))
            patches[i, j] += blob[..., None]
    patches = np.clip(patches, 0, 255).astype(np.uint8)
    return dict(patches=patches, labels=labels, groups=group.astype(np.int64), split=split)
