import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from aift_tf import pipelines as P  # noqa: E402
from aift_tf.errors import AiftError  # noqa: E402
from aift_tf.store import open_store, write_store  # noqa: E402

N, M, S, C = 10, 3, 16, 1


def _code(cand, patch):
    """Pixel value that identifies (candidate, patch); < 256."""
    return 1 + cand * M + patch


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """uint8 store whose patch (i, j) is constant with value _code(i, j)."""
    x = np.empty((N, M, S, S, C), np.uint8)
    for i in range(N):
        for j in range(M):
            x[i, j] = _code(i, j)
    labels = np.array([0, 1, 0, 0, 1, 0, 0, 0, 1, -1])
    groups = np.arange(N)
    split = ["train"] * 8 + ["val", "test"]
    p = tmp_path_factory.mktemp("pipe") / "s.h5"
    write_store(p, x, labels, groups, split, app="demo", class_names=["neg", "pos"])
    s = open_store(p)
    yield s
    s.close()


def _identity_model(sigmoid=False, logits=False):
    """Outputs [1 - v, v] where v is the patch mean in [0, 1], so each prediction names its patch."""
    inp = keras.Input((S, S, C))
    v = keras.layers.GlobalAveragePooling2D()(inp)  # (b, 1)
    if sigmoid:
        out = v
    elif logits:
        out = keras.layers.Lambda(lambda t: keras.ops.concatenate([-5.0 * t, 7.0 * t], axis=1))(v)
    else:
        out = keras.layers.Lambda(lambda t: keras.ops.concatenate([1.0 - t, t], axis=1))(v)
    return keras.Model(inp, out)


def _decode(v):
    return np.rint(np.asarray(v) * 255).astype(int)


@pytest.mark.parametrize("batch_size", [4, 7, 64])
def test_scoring_dataset_candidate_major(store, batch_size):
    ids = np.array([7, 2, 2, 9, 0, 5])
    ds = P.scoring_dataset(store, ids, batch_size=batch_size)
    batches = [b.numpy() for b in ds]
    total = len(ids) * M
    assert int(ds.cardinality()) == len(batches) == -(-total // batch_size)
    assert all(b.dtype == np.float32 and b.shape[1:] == (S, S, C) for b in batches)
    assert all(b.shape[0] == batch_size for b in batches[:-1])
    x = np.concatenate(batches)
    np.testing.assert_array_equal(x, store.read_float(ids).reshape(-1, S, S, C))
    expected = [_code(i, j) for i in ids for j in range(M)]
    assert _decode(x[:, 0, 0, 0]).tolist() == expected
    # re-iterable
    np.testing.assert_array_equal(np.concatenate([b.numpy() for b in ds]), x)


def test_scoring_dataset_empty(store):
    assert list(P.scoring_dataset(store, np.array([], np.int64))) == []


@pytest.mark.parametrize("sigmoid", [False, True])
def test_predict_candidates_regroups_exactly(store, sigmoid):
    model = _identity_model(sigmoid=sigmoid)
    ids = np.array([8, 3, 3, 0, 6, 1, 9])
    seen = []
    probs = P.predict_candidates(model, store, ids, batch_size=4, progress=lambda d, t: seen.append((d, t)))
    assert probs.shape == (len(ids), M, 2) and probs.dtype == np.float32
    expected = np.array([[_code(i, j) for j in range(M)] for i in ids])
    np.testing.assert_array_equal(_decode(probs[:, :, 1]), expected)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-6)
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[-1] == len(ids) and {t for _, t in seen} == {len(ids)}


def test_predict_candidates_all_by_default(store):
    probs = P.predict_candidates(_identity_model(), store, batch_size=5)
    assert probs.shape == (N, M, 2)
    np.testing.assert_array_equal(_decode(probs[:, :, 1]), [[_code(i, j) for j in range(M)] for i in range(N)])


def test_predict_candidates_rejects_logits(store):
    with pytest.raises(AiftError, match="probabilities"):
        P.predict_candidates(_identity_model(logits=True), store, [1, 2])


def test_predict_bad_ids(store):
    with pytest.raises(AiftError, match="out of range"):
        P.predict_candidates(_identity_model(), store, [0, N])


def _collect(ds):
    xs, ys = [], []
    for x, y in ds:
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def test_training_dataset_inherits_labels(store):
    ids = np.array([4, 0, 1, 7])
    labels = np.array([1, 0, 1, 0])
    ds = P.training_dataset(store, ids, labels, batch_size=5, shuffle=False)
    assert int(ds.cardinality()) == P.steps_per_epoch(store, ids, 5) == 3
    assert P.num_patches(store, ids) == 12
    x, y = _collect(ds)
    assert x.dtype == np.float32 and y.dtype == np.int32 and x.shape == (12, S, S, C)
    codes = _decode(x[:, 0, 0, 0])
    cand = (codes - 1) // M
    assert cand.tolist() == np.repeat(ids, M).tolist()  # unshuffled: candidate-major
    lab = dict(zip(ids.tolist(), labels.tolist()))
    assert y.tolist() == [lab[c] for c in cand]


def test_training_dataset_seeded_shuffle(store):
    ids, labels = np.arange(8), np.array([0, 1, 0, 0, 1, 0, 0, 0])
    ds1 = P.training_dataset(store, ids, labels, batch_size=8, seed=3)
    ds2 = P.training_dataset(store, ids, labels, batch_size=8, seed=3)
    ds3 = P.training_dataset(store, ids, labels, batch_size=8, seed=4)
    x1, y1 = _collect(ds1)
    x2, y2 = _collect(ds2)
    x3, _ = _collect(ds3)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(x1, x3)
    codes = _decode(x1[:, 0, 0, 0])
    assert sorted(codes.tolist()) == sorted(_code(i, j) for i in ids for j in range(M))  # a permutation
    assert codes.tolist() != sorted(codes.tolist())
    lab = dict(zip(ids.tolist(), labels.tolist()))
    assert y1.tolist() == [lab[c] for c in ((codes - 1) // M).tolist()]
    # a second pass reshuffles, and does so repeatably
    x1b, _ = _collect(ds1)
    x2b, _ = _collect(ds2)
    assert not np.array_equal(x1, x1b)
    np.testing.assert_array_equal(x1b, x2b)


def test_repeated_training_dataset_restarts_its_seeded_order_on_every_iterator(store):
    """Keras draws one batch under a tf.distribute strategy, then trains on a second iterator: that
    iterator must give the first one's batches, however far the first one prefetched (a race before)."""
    import time

    ids, labels = np.arange(8), np.array([0, 1, 0, 0, 1, 0, 0, 0])
    for kw in ({}, {"augment": True}, {"balance": True}):
        ds = P.training_dataset(store, ids, labels, batch_size=8, seed=3, repeat=True, **kw)
        it = iter(ds)
        first = [next(it) for _ in range(5)]  # 5 batches: past the end of the first pass (3 batches)
        del it
        it = iter(ds)
        next(it)
        time.sleep(0.3)  # let the prefetch run ahead
        del it
        it = iter(ds)
        second = [next(it) for _ in range(5)]
        for (xa, ya), (xb, yb) in zip(first, second):
            np.testing.assert_array_equal(xa.numpy(), xb.numpy())
            np.testing.assert_array_equal(ya.numpy(), yb.numpy())
        assert not np.array_equal(first[0][0].numpy(), first[3][0].numpy())  # passes still reshuffle
        assert int(ds.cardinality()) == -1  # infinite


def test_training_dataset_balance(store):
    ids = np.arange(8)
    labels = np.array([0, 1, 0, 0, 0, 0, 0, 0])  # 1 positive of 8 candidates
    ds = P.training_dataset(store, ids, labels, batch_size=16, seed=0, balance=True)
    x, y = _collect(ds)
    assert y.shape[0] == 24 and int(ds.cardinality()) == 2
    frac = y.mean()
    assert 0.25 <= frac <= 0.75, frac
    # positives drawn are the positive candidate's patches
    cand = (_decode(x[:, 0, 0, 0]) - 1) // M
    assert set(cand[y == 1].tolist()) == {1}
    _, y_again = _collect(P.training_dataset(store, ids, labels, batch_size=16, seed=0, balance=True))
    np.testing.assert_array_equal(y, y_again)


def test_training_dataset_augment(store):
    ids, labels = np.arange(6), np.array([0, 1, 0, 0, 1, 0])
    plain_x, plain_y = _collect(P.training_dataset(store, ids, labels, batch_size=7, seed=1))
    a1 = _collect(P.training_dataset(store, ids, labels, batch_size=7, seed=1, augment=True))
    a2 = _collect(P.training_dataset(store, ids, labels, batch_size=7, seed=1, augment=True))
    assert a1[0].shape == plain_x.shape and a1[0].dtype == np.float32
    np.testing.assert_array_equal(a1[1], plain_y)  # augmentation never touches labels or order
    np.testing.assert_array_equal(a1[0], a2[0])  # seeded
    assert a1[0].min() >= 0 and a1[0].max() <= 1
    assert not np.allclose(a1[0], plain_x)
    # constant patches: geometric transforms are invisible, jitter is small
    assert np.abs(a1[0] - plain_x).max() <= 0.1 + 0.1 * 1.0 + 1e-6


def test_augment_batch_geometry():
    x = tf.reshape(tf.range(2 * 4 * 4, dtype=tf.float32) / 32.0, (2, 4, 4, 1))
    outs = set()
    for s in range(12):
        y = P.augment_batch(x, [s, 0]).numpy()
        assert y.shape == (2, 4, 4, 1)
        outs.add(np.argsort(y[0].ravel()).tobytes())  # pixel arrangement identifies the transform
    assert len(outs) > 2  # several dihedral transforms were used
    np.testing.assert_array_equal(P.augment_batch(x, [5, 1]).numpy(), P.augment_batch(x, [5, 1]).numpy())


def test_training_dataset_repeat(store):
    ids, labels = np.arange(4), np.array([0, 1, 0, 0])
    ds = P.training_dataset(store, ids, labels, batch_size=5, repeat=True)
    steps = P.steps_per_epoch(store, ids, 5)
    batches = list(ds.take(3 * steps))
    assert len(batches) == 3 * steps


def test_training_dataset_fits_a_model(store):
    ids, labels = np.arange(8), np.array([0, 1, 0, 0, 1, 0, 0, 0])
    model = keras.Sequential([keras.Input((S, S, C)), keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    hist = model.fit(P.training_dataset(store, ids, labels, batch_size=8, augment=True), epochs=2, verbose=0)
    assert len(hist.history["loss"]) == 2


@pytest.mark.parametrize(
    "ids, labels, pattern",
    [
        ([9], [-1], "unknown cannot be trained"),
        ([0, 1], [0, 2], "not a class index"),
        ([0, 1], [0], "one per candidate"),
        ([], [], "at least one"),
        ([0, 99], [0, 1], "out of range"),
    ],
)
def test_training_dataset_rejects(store, ids, labels, pattern):
    with pytest.raises(AiftError, match=pattern):
        P.training_dataset(store, np.array(ids, dtype=np.int64), np.array(labels, dtype=np.int64))


def test_float32_store(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((5, 2, 8, 8, 3), dtype=np.float32)
    p = tmp_path / "f.h5"
    write_store(p, x, [0, 1, 0, 1, -1], np.arange(5), ["train"] * 5, app="demo", class_names=["a", "b"])
    with open_store(p) as s:
        got = np.concatenate([b.numpy() for b in P.scoring_dataset(s, [4, 1], batch_size=3)])
        np.testing.assert_array_equal(got, x[[4, 1]].reshape(-1, 8, 8, 3))
        xt, yt = _collect(P.training_dataset(s, [3, 0], [1, 0], batch_size=3, shuffle=False))
        np.testing.assert_array_equal(xt, x[[3, 0]].reshape(-1, 8, 8, 3))
        assert yt.tolist() == [1, 1, 0, 0]


def test_predict_twice_and_save(store, tmp_path):
    model = _identity_model()
    a = P.predict_candidates(model, store, [3, 1], batch_size=4)
    b = P.predict_candidates(model, store, [3, 1], batch_size=2)
    np.testing.assert_array_equal(a, b)
    model.save(tmp_path / "m.keras")  # predicting leaves nothing on the model that breaks saving
