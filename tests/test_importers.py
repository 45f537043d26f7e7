"""Importers: patch-bag augmentation, MedMNIST .npz, image folders and CSV lists → candidate stores."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from aift_tf.errors import AiftError
from aift_tf.importers import (
    Augmentation, child_seed, import_csv, import_folder, import_npz, make_patch_bag, make_patch_bags,
)
from aift_tf.store import open_store


def _img(rng, shape):
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _dihedral(a):
    return [np.rot90(x, k) for x in (a, a[:, ::-1]) for k in range(4)]


# ------------------------------------------------------------------------------------------------
# augmentation
# ------------------------------------------------------------------------------------------------


def test_bag_shape_dtype_and_plain_patch0():
    rng = np.random.default_rng(0)
    img = _img(rng, (20, 20))
    bag = make_patch_bag(img, 6, seed=3)
    assert bag.shape == (6, 20, 20, 1) and bag.dtype == np.uint8
    np.testing.assert_array_equal(bag[0, :, :, 0], img)  # full image, same size → identical
    assert not all(np.array_equal(bag[k], bag[0]) for k in range(1, 6))
    rgb = rng.random((18, 24, 3))
    fbag = make_patch_bag(rgb, 4, patch_size=12, seed=0)
    assert fbag.shape == (4, 12, 12, 3) and fbag.dtype == np.float32
    assert fbag.min() >= rgb.min() - 1e-6 and fbag.max() <= rgb.max() + 1e-6


def test_bag_is_dihedral_transform_without_zoom():
    rng = np.random.default_rng(1)
    img = _img(rng, (16, 16))
    bag = make_patch_bag(img, 24, seed=5, scale_range=(1.0, 1.0))
    seen = set()
    for p in bag:
        matches = [i for i, d in enumerate(_dihedral(img)) if np.array_equal(p[:, :, 0], d)]
        assert matches, "a scale-1 patch must be a flip/90° rotation of the image"
        seen.add(matches[0])
    assert len(seen) >= 4  # flips and rotations are actually drawn
    bag = make_patch_bag(img, 24, seed=5, scale_range=(1.0, 1.0), flips=False, rot90=False)
    assert all(np.array_equal(p[:, :, 0], img) for p in bag)


def test_bag_determinism_and_batch_order_independence():
    rng = np.random.default_rng(2)
    imgs = _img(rng, (9, 16, 16, 3))
    a = make_patch_bags(imgs, 5, 12, seed=7)
    np.testing.assert_array_equal(a, make_patch_bags(imgs, 5, 12, seed=7))
    assert not np.array_equal(a, make_patch_bags(imgs, 5, 12, seed=8))
    order = rng.permutation(9)
    b = make_patch_bags(imgs[order], 5, 12, seed=7, ids=order)
    np.testing.assert_array_equal(a[order], b)
    np.testing.assert_array_equal(a[4], make_patch_bag(imgs[4], 5, 12, seed=child_seed(7, 4)))
    # the same image under two ids gets two different bags
    assert not np.array_equal(a[0, 1:], make_patch_bags(imgs[:1], 5, 12, seed=7, ids=[1])[0, 1:])


def test_downsampling_is_antialiased_and_rotation_stays_in_range():
    checker = ((np.indices((64, 64)).sum(axis=0) % 2) * 255).astype(np.uint8)
    bag = make_patch_bag(checker, 4, patch_size=8, seed=0)
    # a 1-px checkerboard shrunk 8x must average to grey, not alias to black/white stripes
    assert np.abs(bag[0].astype(float) - 127.5).max() < 20
    img = np.random.default_rng(3).random((24, 24))
    rot = make_patch_bag(img, 8, seed=1, rotate_degrees=30.0)
    assert np.isfinite(rot).all() and rot.min() >= img.min() - 1e-6 and rot.max() <= img.max() + 1e-6


@pytest.mark.parametrize("kwargs, words", [
    (dict(m=0), "m (patches"),
    (dict(m=2, patch_size=0), "patch_size"),
    (dict(m=2, scale_range=(0.0, 1.0)), "scale_range"),
    (dict(m=2, rotate_degrees=-5), "rotate_degrees"),
])
def test_bag_bad_arguments(kwargs, words):
    with pytest.raises(AiftError, match=words.replace("(", r"\(")):
        make_patch_bag(np.zeros((8, 8), np.uint8), **kwargs)
    with pytest.raises(AiftError, match="shape"):
        make_patch_bag(np.zeros((2, 8, 8, 1, 1), np.uint8), 2)


# ------------------------------------------------------------------------------------------------
# npz
# ------------------------------------------------------------------------------------------------


def _medmnist(rng, n=(30, 8, 10), hw=(16, 16), channels=None, k=3):
    d = {}
    for s, c in zip(("train", "val", "test"), n):
        shape = (c,) + hw + ((channels,) if channels else ())
        d[f"{s}_images"] = _img(rng, shape)
        lab = np.arange(c) % k
        d[f"{s}_labels"] = rng.permutation(lab)[:, None]
    return d


def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    d = _medmnist(rng, channels=3)
    d["class_names"] = np.array(["adipose", "mucus", "stroma"])
    np.savez(tmp_path / "m.npz", **d)
    summary = import_npz(tmp_path / "m.npz", tmp_path / "m.h5", m=4, seed=1)
    assert summary["counts"] == {"train": 30, "val": 8, "test": 10}
    with open_store(tmp_path / "m.h5") as s:
        assert (s.n, s.m, s.patch_shape, s.dtype) == (48, 4, (16, 16, 3), np.uint8)
        assert s.class_names == ["adipose", "mucus", "stroma"]
        np.testing.assert_array_equal(s.split, [0] * 30 + [1] * 8 + [2] * 10)
        labels = np.concatenate([d[f"{k}_labels"][:, 0] for k in ("train", "val", "test")])
        np.testing.assert_array_equal(s.labels, labels)
        assert np.unique(s.groups).size == 48  # each image its own group
        x = s.read(np.arange(48))
        np.testing.assert_array_equal(x[30, 0], d["val_images"][0])  # patch 0 = the image
        assert s.attrs["importer"] == "npz" and s.attrs["augmentation"]["scale_range"] == [0.7, 1.0]
    import_npz(tmp_path / "m.npz", tmp_path / "m2.h5", m=4, seed=1)
    import_npz(tmp_path / "m.npz", tmp_path / "m3.h5", m=4, seed=2)
    with open_store(tmp_path / "m.h5") as a, open_store(tmp_path / "m2.h5") as b, \
            open_store(tmp_path / "m3.h5") as c:
        ids = np.arange(48)
        np.testing.assert_array_equal(a.read(ids), b.read(ids))
        assert not np.array_equal(a.read(ids), c.read(ids))


def test_npz_float_gray_carved_splits_and_groups(tmp_path):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "f.npz", train_images=rng.random((40, 12, 12)).astype(np.float32),
             train_labels=np.arange(40) % 2, train_groups=np.arange(40) // 4)
    summary = import_npz(tmp_path / "f.npz", tmp_path / "f.h5", m=3, patch_size=10, seed=0,
                         val_fraction=0.2, test_fraction=0.2)
    with open_store(tmp_path / "f.h5") as s:
        assert s.dtype == np.float32 and s.patch_shape == (10, 10, 1)
        assert s.class_names == ["class_0", "class_1"]
        np.testing.assert_array_equal(s.groups, np.arange(40) // 4)
        for g in np.unique(s.groups):
            assert np.unique(s.split[s.groups == g]).size == 1
        counts = s.split_counts()
        assert counts["val"] > 0 and counts["test"] > 0 and counts["train"] >= 16
    assert sum(summary["counts"].values()) == 40


def _write(tmp_path, name, **arrays):
    p = tmp_path / name
    np.savez(p, **arrays)
    return p


def _good(rng):
    return dict(train_images=_img(rng, (6, 8, 8)), train_labels=np.array([0, 1, 0, 1, 0, 1]))


@pytest.mark.parametrize("case, words", [
    ("missing", "no such file"),
    ("text", "not an .npz"),
    ("npy", "not an .npz"),
    ("no_labels", "missing key(s) train_labels"),
    ("val_half", "missing key(s) val_labels"),
    ("length", "train_labels has 5 entries but the images have 6"),
    ("negative", "train_labels[2] = -1 is negative"),
    ("fractional", "train_labels[1] = 0.5 is not an integer"),
    ("range", "train_labels[1] = 2 is out of range for 2 class_names"),
    ("empty", "val_images is empty"),
    ("nan", "train_images[3] contains NaN"),
    ("ndim", "train_images must have shape"),
    ("channels", "train_images has 2 channels"),
    ("float_range", "float train_images must lie in [0, 1]"),
    ("one_class", "only one class"),
    ("multilabel", "multi-label"),
    ("shape_mismatch", "test_images has image shape"),
    ("group_leak", "group 0 appears in both train_groups and test_groups"),
])
def test_npz_errors(tmp_path, case, words):
    rng = np.random.default_rng(0)
    g = _good(rng)
    if case == "missing":
        p = tmp_path / "nope.npz"
    elif case == "text":
        p = tmp_path / "t.npz"
        p.write_text("hello")
    elif case == "npy":
        p = tmp_path / "x.npz"
        with open(p, "wb") as f:
            np.save(f, np.zeros(3))
    elif case == "no_labels":
        p = _write(tmp_path, "a.npz", train_images=g["train_images"])
    elif case == "val_half":
        p = _write(tmp_path, "a.npz", **g, val_images=g["train_images"])
    elif case == "length":
        p = _write(tmp_path, "a.npz", train_images=g["train_images"], train_labels=np.arange(5) % 2)
    elif case == "negative":
        p = _write(tmp_path, "a.npz", train_images=g["train_images"], train_labels=np.array([0, 1, -1, 1, 0, 1]))
    elif case == "fractional":
        p = _write(tmp_path, "a.npz", train_images=g["train_images"], train_labels=np.array([0, .5, 1, 1, 0, 1]))
    elif case == "range":
        p = _write(tmp_path, "a.npz", train_images=g["train_images"], train_labels=np.array([0, 2, 1, 1, 0, 1]),
                   class_names=np.array(["a", "b"]))
    elif case == "empty":
        p = _write(tmp_path, "a.npz", **g, val_images=np.zeros((0, 8, 8), np.uint8), val_labels=np.zeros(0, int))
    elif case == "nan":
        x = rng.random((6, 8, 8))
        x[3, 1, 1] = np.nan
        p = _write(tmp_path, "a.npz", train_images=x, train_labels=g["train_labels"])
    elif case == "ndim":
        p = _write(tmp_path, "a.npz", train_images=np.zeros((6, 64), np.uint8), train_labels=g["train_labels"])
    elif case == "channels":
        p = _write(tmp_path, "a.npz", train_images=np.zeros((6, 8, 8, 2), np.uint8), train_labels=g["train_labels"])
    elif case == "float_range":
        p = _write(tmp_path, "a.npz", train_images=rng.random((6, 8, 8)) * 255, train_labels=g["train_labels"])
    elif case == "one_class":
        p = _write(tmp_path, "a.npz", train_images=g["train_images"], train_labels=np.zeros(6, int))
    elif case == "multilabel":
        p = _write(tmp_path, "a.npz", train_images=g["train_images"], train_labels=np.zeros((6, 3), int))
    elif case == "shape_mismatch":
        p = _write(tmp_path, "a.npz", **g, test_images=_img(rng, (2, 9, 8)), test_labels=np.array([0, 1]))
    elif case == "group_leak":
        p = _write(tmp_path, "a.npz", **g, train_groups=np.arange(6), test_images=_img(rng, (2, 8, 8)),
                   test_labels=np.array([0, 1]), test_groups=np.array([0, 9]))
    out = tmp_path / "out.h5"
    with pytest.raises(AiftError) as e:
        import_npz(p, out, m=2)
    msg = str(e.value)
    assert words in msg and "\n" not in msg
    assert not out.exists()
    assert [q.name for q in tmp_path.iterdir() if q.name.startswith(".out.h5")] == []


def test_npz_refuses_existing_output_unless_overwrite(tmp_path):
    rng = np.random.default_rng(0)
    p = _write(tmp_path, "a.npz", **_good(rng))
    out = tmp_path / "out.h5"
    import_npz(p, out, m=3)  # a previous store
    precious = out.read_bytes()
    with pytest.raises(AiftError, match="already exists; pass --overwrite"):
        import_npz(p, out, m=2)
    assert out.read_bytes() == precious
    import_npz(p, out, m=2, overwrite=True, val_fraction=0, test_fraction=0)
    with open_store(out) as s:
        assert s.n == 6 and s.split_counts()["train"] == 6


# ------------------------------------------------------------------------------------------------
# folders and CSV
# ------------------------------------------------------------------------------------------------


def _tree(root, rng, classes=("benign", "malignant"), per=6, size=(20, 20), mode="L"):
    for c in classes:
        for i in range(per):
            d = root / c / f"patient{i % 3}"
            d.mkdir(parents=True, exist_ok=True)
            shape = size + ((3,) if mode == "RGB" else ())
            Image.fromarray(_img(rng, shape), mode).save(d / f"img{i}.png")


def test_import_folder_gray_and_subfolder_groups(tmp_path):
    rng = np.random.default_rng(0)
    _tree(tmp_path / "data", rng)
    (tmp_path / "data" / "benign" / "notes.txt").write_text("ignored")
    summary = import_folder(tmp_path / "data", tmp_path / "f.h5", m=3, seed=0, group_by="subfolder",
                            val_fraction=0.3, test_fraction=0.3)
    with open_store(tmp_path / "f.h5") as s:
        assert s.class_names == ["benign", "malignant"]
        assert (s.n, s.patch_shape, s.dtype) == (12, (20, 20, 1), np.uint8)
        np.testing.assert_array_equal(np.bincount(s.labels), [6, 6])
        assert np.unique(s.groups).size == 3  # patient0..2, shared across the two classes
        for g in np.unique(s.groups):
            assert np.unique(s.split[s.groups == g]).size == 1
        # patch 0 is the stored image itself (gray, same size)
        first = np.asarray(Image.open(tmp_path / "data" / "benign" / "patient0" / "img0.png"))
        np.testing.assert_array_equal(s.read([0])[0, 0, :, :, 0], first)
    assert summary["counts"]["train"] > 0


def test_import_folder_rgb_mixed_sizes(tmp_path):
    rng = np.random.default_rng(1)
    _tree(tmp_path / "d", rng, per=3, size=(16, 20), mode="RGB")
    Image.fromarray(_img(rng, (30, 30))).save(tmp_path / "d" / "benign" / "odd.png")
    import_folder(tmp_path / "d", tmp_path / "o.h5", m=2, patch_size=12)
    with open_store(tmp_path / "o.h5") as s:
        assert s.patch_shape == (12, 12, 3) and s.n == 7
        assert s.attrs["image_shape"] == [16, 20, 3]  # the most frequent size


def test_import_folder_errors(tmp_path):
    rng = np.random.default_rng(2)
    _tree(tmp_path / "d", rng, per=2)
    bad = tmp_path / "d" / "malignant" / "broken.png"
    bad.write_bytes(b"not a png at all")
    out = tmp_path / "o.h5"
    with pytest.raises(AiftError, match="cannot read image .*broken.png"):
        import_folder(tmp_path / "d", out)
    assert not out.exists()
    bad.unlink()
    (tmp_path / "d" / "empty").mkdir()
    with pytest.raises(AiftError, match="empty: class folder has no images"):
        import_folder(tmp_path / "d", out)
    (tmp_path / "one" / "only").mkdir(parents=True)
    Image.fromarray(_img(rng, (8, 8))).save(tmp_path / "one" / "only" / "a.png")
    with pytest.raises(AiftError, match="found 1 class sub-folder.*need at least 2"):
        import_folder(tmp_path / "one", out)
    with pytest.raises(AiftError, match="no such folder"):
        import_folder(tmp_path / "nope", out)
    assert not out.exists()


def test_import_csv_strings_groups_and_split(tmp_path):
    rng = np.random.default_rng(3)
    (tmp_path / "img").mkdir()
    lines = ["Path,Label,Group,Split"]
    for i in range(8):
        Image.fromarray(_img(rng, (18, 18, 3)), "RGB").save(tmp_path / "img" / f"{i}.png")
        split = "train" if i < 4 else ("val" if i < 6 else "test")
        lines.append(f"img/{i}.png,{'tumour' if i % 2 else 'normal'},p{i // 2},{split}")
    (tmp_path / "l.csv").write_text("\n".join(lines) + "\n")
    import_csv(tmp_path / "l.csv", tmp_path / "c.h5", m=3, image_size=(14, 16))
    with open_store(tmp_path / "c.h5") as s:
        assert s.class_names == ["normal", "tumour"]
        np.testing.assert_array_equal(s.labels, np.arange(8) % 2)
        np.testing.assert_array_equal(s.groups, np.arange(8) // 2)
        np.testing.assert_array_equal(s.split, [0, 0, 0, 0, 1, 1, 2, 2])
        assert s.patch_shape == (14, 14, 3)
    # integer labels + seeded split by group when there is no split column
    (tmp_path / "i.csv").write_text("path,label\n" + "".join(f"img/{i}.png,{i % 2}\n" for i in range(8)))
    import_csv(tmp_path / "i.csv", tmp_path / "i.h5", m=2, seed=4, test_fraction=0.25, val_fraction=0.0)
    with open_store(tmp_path / "i.h5") as s:
        assert s.class_names == ["class_0", "class_1"]
        assert s.split_counts() == {"train": 6, "val": 0, "test": 2}


@pytest.mark.parametrize("body, words", [
    ("file,label\nimg/0.png,a\n", "missing column(s) path"),
    ("path,label\nimg/0.png,a\nimg/1.png,\n", "line 3: empty 'label'"),
    ("path,label,split\nimg/0.png,a,train\nimg/1.png,b,holdout\n", "line 3: unknown split 'holdout'"),
    ("path,label\nimg/0.png,a\nimg/missing.png,b\n", "missing.png does not exist"),
    ("path,label\nimg/0.png,0\nimg/1.png,-1\n", "line 3: label '-1' is negative"),
    ("path,label,group,split\nimg/0.png,a,p,train\nimg/1.png,b,p,test\n", "line 3: group 'p' is in split test"),
    ("path,label\n", "no data rows"),
])
def test_import_csv_errors(tmp_path, body, words):
    rng = np.random.default_rng(4)
    (tmp_path / "img").mkdir()
    for i in range(2):
        Image.fromarray(_img(rng, (10, 10))).save(tmp_path / "img" / f"{i}.png")
    (tmp_path / "l.csv").write_text(body)
    out = tmp_path / "o.h5"
    with pytest.raises(AiftError) as e:
        import_csv(tmp_path / "l.csv", out, m=2)
    assert words in str(e.value) and "\n" not in str(e.value)
    assert not out.exists()


def test_failure_while_writing_leaves_nothing(tmp_path):
    rng = np.random.default_rng(5)
    d = _medmnist(rng, n=(300, 4, 4), hw=(8, 8))
    np.savez(tmp_path / "big.npz", **d)

    def boom(done, total):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        import_npz(tmp_path / "big.npz", tmp_path / "o.h5", m=2, progress=boom)
    assert sorted(q.name for q in tmp_path.iterdir()) == ["big.npz"]
