import json
import os
import threading

import h5py
import numpy as np
import pytest

from aift_tf.errors import AiftError, StoreError
from aift_tf.store import SPLITS, CandidateStore, StoreWriter, open_store, write_store

N, M, H, W, C = 12, 3, 8, 8, 1


def _data(dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == np.uint8:
        x = rng.integers(0, 256, (N, M, H, W, C), dtype=np.uint8)
    else:
        x = rng.random((N, M, H, W, C), dtype=np.float32)
    labels = np.array([-1, -1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 0], dtype=np.int64)
    groups = np.arange(N) // 2  # 6 groups of 2
    split = np.array(["train"] * 8 + ["val"] * 2 + ["test"] * 2)
    return x, labels, groups, split


def _write(path, dtype=np.uint8, **kw):
    x, labels, groups, split = _data(dtype)
    args = dict(app="demo", class_names=["negative", "positive"])
    args.update(kw)
    write_store(path, x, labels, groups, split, **args)
    return x, labels, groups, split


def _leftovers(folder):
    return [f for f in os.listdir(folder) if f.endswith(".tmp.h5") or ".tmp" in f]


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_roundtrip(tmp_path, dtype):
    p = tmp_path / "s.h5"
    x, labels, groups, split = _write(p, dtype, attrs={"source": "unit", "sizes": [1, 2], "seed": 3, "ok": True})
    with open_store(p) as s:
        assert isinstance(s, CandidateStore)
        assert (s.n, s.m, s.patch_shape, s.dtype) == (N, M, (H, W, C), np.dtype(dtype))
        assert s.class_names == ["negative", "positive"] and s.num_classes == 2 and s.app == "demo"
        assert s.attrs == {"source": "unit", "sizes": [1, 2], "seed": 3, "ok": True}
        np.testing.assert_array_equal(s.labels, labels)
        np.testing.assert_array_equal(s.groups, groups)
        assert s.labels.dtype == np.int64 and s.groups.dtype == np.int64 and s.split.dtype == np.uint8
        np.testing.assert_array_equal(s.split, [0] * 8 + [1] * 2 + [2] * 2)
        np.testing.assert_array_equal(s.ids("train"), np.arange(8))
        np.testing.assert_array_equal(s.ids("val"), [8, 9])
        np.testing.assert_array_equal(s.ids("test"), [10, 11])
        np.testing.assert_array_equal(s.ids(), np.arange(N))
        assert s.ids("test").dtype == np.int64
        assert len(s.sha256) == 64 and s.sha256 == s.sha256
        with pytest.raises(AiftError):
            s.ids("training")
        with pytest.raises(ValueError):
            s.labels[0] = 1  # read-only view of the metadata
        with h5py.File(p, "r") as f:
            assert f["patches"].chunks == (1, M, H, W, C)
            assert f.attrs["format"] == "aift-candidate-store" and int(f.attrs["format_version"]) == 1
            assert json.loads(f.attrs["class_names"]) == ["negative", "positive"]
    assert s.closed


def test_read_order_duplicates_and_float(tmp_path):
    p = tmp_path / "s.h5"
    x, *_ = _write(p)
    with open_store(p) as s:
        for ids in ([5], [11, 0, 3, 4, 5, 2], [4, 4, 1, 4], np.array([9, 8, 7, 6]), np.arange(N), []):
            got = s.read(ids)
            assert got.dtype == np.uint8 and got.shape == (len(ids), M, H, W, C)
            np.testing.assert_array_equal(got, x[np.asarray(ids, dtype=int)])
        f = s.read_float([3, 1])
        assert f.dtype == np.float32
        np.testing.assert_array_equal(f, x[[3, 1]].astype(np.float32) / np.float32(255))
        chunks = list(s.iter_chunks([7, 1, 2, 10, 0], chunk=2))
        assert [c[0].tolist() for c in chunks] == [[7, 1], [2, 10], [0]]
        np.testing.assert_array_equal(np.concatenate([c[1] for c in chunks]), x[[7, 1, 2, 10, 0]] / np.float32(255))
        with pytest.raises(AiftError, match="out of range"):
            s.read([N])
        with pytest.raises(AiftError, match="out of range"):
            s.read([-1])


def test_threaded_reads(tmp_path):
    p = tmp_path / "s.h5"
    x, *_ = _write(p)
    errors = []
    with open_store(p) as s:
        def worker(seed):
            rng = np.random.default_rng(seed)
            for _ in range(30):
                ids = rng.integers(0, N, 5)
                if not np.array_equal(s.read(ids), x[ids]):
                    errors.append(seed)
        ts = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    assert not errors


# --- validation at open ---------------------------------------------------------------------------


def _corrupt(path, how):
    """Modify a valid store in place to break it in one way."""
    if how == "missing file":
        os.remove(path)
        return
    if how == "garbage file":
        path.write_bytes(b"this is not an HDF5 file at all\n" * 10)
        return
    if how == "truncated file":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
        return
    with h5py.File(path, "r+") as f:
        if how == "missing dataset":
            del f["groups"]
        elif how == "bad label":
            lab = f["labels"][()]
            lab[4] = 2
            f["labels"][...] = lab
        elif how == "label below -1":
            lab = f["labels"][()]
            lab[4] = -2
            f["labels"][...] = lab
        elif how == "negative group":
            g = f["groups"][()]
            g[0] = -3
            f["groups"][...] = g
        elif how == "group in two splits":
            g = f["groups"][()]
            g[11] = 0  # a test candidate joins training group 0
            f["groups"][...] = g
        elif how == "mismatched lengths":
            del f["labels"]
            f.create_dataset("labels", data=np.zeros(N - 1, dtype=np.int64))
        elif how == "bad format version":
            f.attrs["format_version"] = 2
        elif how == "wrong format":
            f.attrs["format"] = "something-else"
        elif how == "unknown split code":
            s = f["split"][()]
            s[3] = 7
            f["split"][...] = s
        elif how == "wrong ndim":
            x = f["patches"][()]
            del f["patches"]
            f.create_dataset("patches", data=x.reshape(N, M, H, W))
        elif how == "bad dtype":
            lab = f["labels"][()]
            del f["labels"]
            f.create_dataset("labels", data=lab.astype(np.float64))
        elif how == "bad patch dtype":
            x = f["patches"][()]
            del f["patches"]
            f.create_dataset("patches", data=x.astype(np.int16))
        elif how == "empty store":
            for name in ("patches", "labels", "groups", "split"):
                shape = f[name].shape
                dt = f[name].dtype
                del f[name]
                f.create_dataset(name, shape=(0,) + shape[1:], dtype=dt)
        elif how == "NaN in float patches":
            p = f["patches"]
            block = p[9]
            block[1, 2, 3, 0] = np.nan
            p[9] = block
        elif how == "float patches above 1":
            p = f["patches"]
            block = p[2]
            block[0, 0, 0, 0] = 3.0
            p[2] = block
        else:  # pragma: no cover
            raise AssertionError(how)


CASES = {
    "missing file": "no such file",
    "garbage file": "HDF5",
    "truncated file": "HDF5|corrupt",
    "missing dataset": "missing dataset 'groups'",
    "bad label": "label 2 of candidate 4",
    "label below -1": "label -2 of candidate 4",
    "negative group": "negative",
    "group in two splits": "group 0 appears in splits train and test",
    "mismatched lengths": "'labels' has 11 entries",
    "bad format version": "format_version 2",
    "wrong format": "something-else",
    "unknown split code": "split code 7",
    "wrong ndim": "5-D",
    "bad dtype": "float64",
    "bad patch dtype": "int16",
    "empty store": "empty",
    "NaN in float patches": "candidate 9 contain NaN",
    "float patches above 1": "candidate 2",
}


@pytest.mark.parametrize("how", sorted(CASES))
def test_open_rejects(tmp_path, how):
    p = tmp_path / "broken.h5"
    _write(p, np.float32 if "float" in how else np.uint8)
    _corrupt(p, how)
    with pytest.raises(StoreError) as ei:
        open_store(p)
    msg = str(ei.value)
    assert "\n" not in msg
    assert msg.startswith(str(p)), msg
    import re

    assert re.search(CASES[how], msg), msg


def test_check_values_can_be_skipped(tmp_path):
    p = tmp_path / "s.h5"
    _write(p, np.float32)
    _corrupt(p, "NaN in float patches")
    with open_store(p, check_values=False) as s:
        assert np.isnan(s.read([9])).any()


def test_float_scan_is_streamed(tmp_path, monkeypatch):
    """The value check reads blocks, never the whole pool at once."""
    import aift_tf.store as st

    monkeypatch.setattr(st, "_BLOCK_BYTES", 2 * M * H * W * C * 4)  # two candidates per block
    seen = []
    real = st._check_float_values
    monkeypatch.setattr(st, "_check_float_values", lambda w, b, o: (seen.append(b.shape[0]), real(w, b, o)))
    p = tmp_path / "s.h5"
    _write(p, np.float32)
    seen.clear()
    open_store(p).close()
    assert max(seen) == 2 and sum(seen) == N


def test_directory_is_rejected(tmp_path):
    with pytest.raises(StoreError, match="not a file"):
        open_store(tmp_path)


# --- writing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, pattern",
    [
        (dict(labels=np.array([0] * (N - 1) + [5])), "label 5 of candidate 11"),
        (dict(labels=np.zeros(N - 1)), "labels has 11 entries"),
        (dict(groups=np.r_[np.arange(N - 1), -1]), "group id -1 of candidate 11 is negative"),
        (dict(groups=np.zeros(N, dtype=int)), "group 0 appears in splits train and val"),
        (dict(split=np.array(["train"] * (N - 1) + ["holdout"])), "unknown split 'holdout' at candidate 11"),
        (dict(split=np.array([0] * (N - 1) + [3])), "unknown split code 3"),
        (dict(patches=np.zeros((N, M, H, W), np.uint8)), "5-D"),
        (dict(patches=np.full((N, M, H, W, C), np.nan, np.float32)), "NaN"),
        (dict(patches=np.full((N, M, H, W, C), 2.0, np.float32)), r"outside \[0, 1\]"),
        (dict(class_names=["only"]), "at least 2 classes"),
        (dict(class_names=["a", "a"]), "duplicates"),
        (dict(labels=np.full(N, 0.5)), "must be integers"),
        (dict(attrs={"format": "x"}), "reserved"),
        (dict(attrs={"obj": object()}), "JSON"),
        (dict(app=""), "app"),
    ],
)
def test_write_store_rejects_and_leaves_nothing(tmp_path, change, pattern):
    x, labels, groups, split = _data()
    args = dict(patches=x, labels=labels, groups=groups, split=split, app="demo", class_names=["n", "p"])
    args.update(change)
    p = tmp_path / "out.h5"
    with pytest.raises(StoreError, match=pattern) as ei:
        write_store(p, **args)
    assert str(p) in str(ei.value)
    assert not p.exists()
    assert os.listdir(tmp_path) == []


def test_write_store_replaces_existing_only_when_complete(tmp_path):
    p = tmp_path / "s.h5"
    _write(p)
    before = p.read_bytes()
    x, labels, groups, split = _data()
    with pytest.raises(StoreError):
        write_store(p, x, labels + 5, groups, split, app="demo", class_names=["n", "p"])
    assert p.read_bytes() == before
    assert os.listdir(tmp_path) == ["s.h5"]


def test_split_codes_and_compression(tmp_path):
    x, labels, groups, _ = _data()
    codes = np.array([0] * 8 + [1] * 2 + [2] * 2, dtype=np.int32)
    p = tmp_path / "c.h5"
    write_store(p, x, labels, groups, codes, app="demo", class_names=["n", "p"], compression="gzip")
    with open_store(p) as s:
        np.testing.assert_array_equal(s.split, codes)
        np.testing.assert_array_equal(s.read([3, 0]), x[[3, 0]])


def test_store_writer_incremental(tmp_path):
    x, labels, groups, split = _data()
    p = tmp_path / "inc.h5"
    with StoreWriter(p, N, M, (H, W, C), "uint8", app="demo", class_names=["n", "p"], attrs={"k": {"a": 1}}) as w:
        for start in (8, 0, 4):  # any order
            sl = slice(start, start + 4)
            w.write(start, x[sl], labels[sl], groups[sl], split[sl])
        assert not p.exists()  # only appears on close
    with open_store(p) as s:
        np.testing.assert_array_equal(s.read(np.arange(N)), x)
        np.testing.assert_array_equal(s.labels, labels)
        assert s.attrs == {"k": {"a": 1}}


def test_store_writer_exception_leaves_nothing(tmp_path):
    x, labels, groups, split = _data()
    p = tmp_path / "inc.h5"
    with pytest.raises(RuntimeError):
        with StoreWriter(p, N, M, (H, W, C), "uint8", app="demo", class_names=["n", "p"]) as w:
            w.write(0, x[:4], labels[:4], groups[:4], split[:4])
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_store_writer_incomplete_and_bad_rows(tmp_path):
    x, labels, groups, split = _data()
    p = tmp_path / "inc.h5"
    with pytest.raises(StoreError, match="never written"):
        with StoreWriter(p, N, M, (H, W, C), "uint8", app="demo", class_names=["n", "p"]) as w:
            w.write(0, x[:4], labels[:4], groups[:4], split[:4])
    assert os.listdir(tmp_path) == []
    with pytest.raises(StoreError, match="outside"):
        with StoreWriter(p, N, M, (H, W, C), "uint8", app="demo", class_names=["n", "p"]) as w:
            w.write(10, x[:4], labels[:4], groups[:4], split[:4])
    with pytest.raises(StoreError, match="shape"):
        with StoreWriter(p, N, M, (H, W, C), "uint8", app="demo", class_names=["n", "p"]) as w:
            w.write(0, x[:4, :2], labels[:4], groups[:4], split[:4])
    with pytest.raises(StoreError, match="integer patches"):
        with StoreWriter(p, N, M, (H, W, C), "uint8", app="demo", class_names=["n", "p"]) as w:
            w.write(0, x[:4] / 255.0, labels[:4], groups[:4], split[:4])
    assert os.listdir(tmp_path) == []
    w = StoreWriter(p, N, M, (H, W, C), "float32", app="demo", class_names=["n", "p"])
    w.abort()
    assert os.listdir(tmp_path) == []


def test_missing_parent_folder(tmp_path):
    x, labels, groups, split = _data()
    with pytest.raises(AiftError, match="does not exist"):
        write_store(tmp_path / "nope" / "s.h5", x, labels, groups, split, app="demo", class_names=["n", "p"])


def test_hand_written_store_opens(tmp_path):
    """The minimal h5py recipe of data/README.md yields a valid store."""
    p = tmp_path / "hand.h5"
    rng = np.random.default_rng(1)
    with h5py.File(p, "w") as f:
        f.create_dataset("patches", data=rng.integers(0, 256, (4, 2, 16, 16, 3), dtype=np.uint8),
                         chunks=(1, 2, 16, 16, 3))
        f.create_dataset("labels", data=np.array([0, 1, -1, 1], dtype=np.int64))
        f.create_dataset("groups", data=np.array([0, 0, 1, 2], dtype=np.int64))
        f.create_dataset("split", data=np.array([0, 0, 1, 2], dtype=np.uint8))
        f.attrs["format"] = "aift-candidate-store"
        f.attrs["format_version"] = 1
        f.attrs["app"] = "by-hand"
        f.attrs["class_names"] = json.dumps(["negative", "positive"])
    with open_store(p) as s:
        assert s.n == 4 and s.m == 2 and s.patch_shape == (16, 16, 3) and s.attrs == {}
        assert s.split_counts() == {"train": 2, "val": 1, "test": 1}


def test_splits_constant():
    assert SPLITS == ("train", "val", "test")


def test_store_module_does_not_import_tensorflow():
    import subprocess
    import sys

    code = "import sys, aift_tf.store; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
