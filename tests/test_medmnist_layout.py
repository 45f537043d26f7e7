"""simulate.medmnist_layout writes a store as a MedMNIST-layout .npz that import-npz reads back."""

import numpy as np


def test_medmnist_layout_round_trip(tiny_store_path, tmp_path):
    from aift_tf.importers import import_npz
    from aift_tf.store import open_store
    from simulate.medmnist_layout import medmnist_arrays

    with open_store(tiny_store_path) as store:
        arrays = medmnist_arrays(store, size=12)
        counts = {s: int((store.labels[store.ids(s)] >= 0).sum()) for s in ("train", "val", "test")}
        first = int(store.ids("train")[0])
        plane = store.read([first])[0, 0, :, :, 0]
    for s, n in counts.items():
        assert arrays[f"{s}_images"].shape == (n, 12, 12) and arrays[f"{s}_images"].dtype == np.uint8
        assert arrays[f"{s}_labels"].shape == (n, 1)
    if plane.shape == (12, 12):
        np.testing.assert_array_equal(arrays["train_images"][0], plane)
    np.savez(tmp_path / "x.npz", **arrays)
    import_npz(tmp_path / "x.npz", tmp_path / "x.h5", m=3, seed=0)
    with open_store(tmp_path / "x.h5") as again:
        assert again.patch_shape == (12, 12, 1) and again.m == 3
        assert {s: again.ids(s).size for s in counts} == counts
        np.testing.assert_array_equal(again.labels[again.ids("train")], arrays["train_labels"].ravel())


def test_grading_stand_in_is_ordinal_imbalanced_grouped_and_seeded(tmp_path):
    import pytest
    from click.testing import CliRunner

    from aift_tf.errors import AiftError
    from aift_tf.store import open_store
    from simulate.medmnist_layout import class_mix, grading_arrays, main

    a = grading_arrays(5, n=(400, 60, 81), size=16, seed=3)
    b = grading_arrays(5, n=(400, 60, 81), size=16, seed=3)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["train_images"], grading_arrays(5, n=(400, 60, 81), size=16, seed=4)["train_images"])
    assert list(a["class_names"]) == [f"grade_{k}" for k in range(5)]
    for s, n in (("train", 400), ("val", 60), ("test", 81)):
        assert a[f"{s}_images"].shape == (n, 16, 16) and a[f"{s}_images"].dtype == np.uint8
        assert a[f"{s}_labels"].shape == (n, 1) and a[f"{s}_groups"].shape == (n,)
        assert set(a[f"{s}_labels"].ravel().tolist()) == set(range(5))  # every grade in every split
    counts = np.bincount(a["train_labels"].ravel(), minlength=5)
    assert counts[0] > counts[2] > counts[4]            # imbalanced: the mix falls with the grade
    assert abs(class_mix(5)[4] - 0.0562) < 1e-3  # a rare class (< 5 % of the pool is "rare")
    # two eyes per patient share a group; no patient in two splits
    assert np.bincount(a["train_groups"]).max() == 2
    assert not set(a["train_groups"]) & set(a["test_groups"])
    # ordinal: brighter lesion mass with the grade (mean of the brightest pixels)
    top = [np.sort(a["train_images"][a["train_labels"].ravel() == k].reshape(-1, 256), axis=1)[:, -8:].mean()
           for k in range(5)]
    assert all(x < y for x, y in zip(top, top[1:])), top
    with pytest.raises(AiftError, match="classes must be an integer >= 3"):
        grading_arrays(2)
    # the CLI writes it; import-npz reads a 5-class store
    out = tmp_path / "g.npz"
    r = CliRunner().invoke(_Main(main), ["--classes", "5", "--images", "60", "20", "20", "--size", "12",
                                         "--out", str(out)])
    assert r.exit_code == 0, r.output
    from aift_tf.importers import import_npz

    import_npz(out, tmp_path / "g.h5", m=2, seed=0)
    with open_store(tmp_path / "g.h5") as s:
        assert s.num_classes == 5 and s.patch_shape == (12, 12, 1)
    r = CliRunner().invoke(_Main(main), ["--classes", "5", "--images", "60", "3", "20", "--out", str(out)])
    assert r.exit_code == 2 and "error: --images: the val split needs at least 5 images" in r.output


class _Main:
    def __init__(self, main):
        self.main_fn, self.name = main, "medmnist_layout"

    def main(self, args=None, prog_name=None, **extra):
        self.main_fn(args)
