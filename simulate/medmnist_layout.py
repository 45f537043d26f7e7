"""Write a simulated application as a MedMNIST-layout ``.npz`` (one grayscale image per candidate).

The harness is measured on a store that comes in through ``aift-data import-npz`` the way a user's own
MedMNIST-style data would (28×28 grayscale by default), without downloading anything: each candidate
of a simulated app contributes the first channel of its first patch (for the pulmonary-embolism app:
the axial plane), resized with Pillow, under the app's own train/val/test split. The import then
makes the candidate's m augmented patches, as for any MedMNIST file. It is a stand-in with the
MedMNIST layout, not MedMNIST data.

Usage::

    python -m simulate.medmnist_layout --app pulmonary-embolism --out pe28.npz [--size 28]
    aift-data import-npz pe28.npz --out pe28.h5 --patches 8
    aift-sim --data pe28.h5
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from aift_tf._io import atomic_path
from aift_tf.errors import AiftError


def medmnist_arrays(store, size: int = 28) -> dict:
    """{split_images, split_labels, class_names} of an open candidate store (see the module docstring)."""
    from PIL import Image

    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise AiftError(f"size must be an integer >= 8; got {size!r}")
    out = {"class_names": np.asarray(store.class_names)}
    for split in ("train", "val", "test"):
        ids = store.ids(split)
        ids = ids[store.labels[ids] >= 0]
        imgs = np.empty((ids.size, size, size), dtype=np.uint8)
        for k, i in enumerate(ids):
            plane = np.asarray(store.read([int(i)])[0, 0, :, :, 0], dtype=np.uint8)
            imgs[k] = np.asarray(Image.fromarray(plane).resize((size, size), Image.BILINEAR))
        out[f"{split}_images"] = imgs
        out[f"{split}_labels"] = store.labels[ids].astype(np.int64).reshape(-1, 1)
    return out


def main(argv=None) -> None:
    import click

    from aift_tf._cli import run_cli

    @click.command(context_settings={"help_option_names": ["-h", "--help"]})
    @click.option("--app", default="pulmonary-embolism", show_default=True, help="Simulated application.")
    @click.option("--out", required=True, type=click.Path(dir_okay=False), help="The .npz to write.")
    @click.option("--size", type=click.IntRange(min=8), default=28, show_default=True, help="Image side in pixels.")
    @click.option("--app-seed", type=int, default=0, show_default=True)
    def cli(app, out, size, app_seed):
        """Write a simulated app as a MedMNIST-layout .npz (grayscale, one image per candidate)."""
        from aift_tf.store import open_store
        from simulate.apps import cached_store

        with open_store(cached_store(app, scale="quick", seed=app_seed)) as store:
            arrays = medmnist_arrays(store, size)
        with atomic_path(Path(out), suffix=".npz") as tmp:
            np.savez_compressed(tmp, **arrays)
        n = {k: v.shape[0] for k, v in arrays.items() if k.endswith("_images")}
        click.echo(f"{out}: {n}")

    run_cli(cli, argv, prog_name="python -m simulate.medmnist_layout")


if __name__ == "__main__":
    main(sys.argv[1:])
