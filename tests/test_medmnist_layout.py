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
