"""Write a simulated application as a MedMNIST-layout ``.npz`` (one grayscale image per candidate).

The harness is measured on a store that comes in through ``aift-data import-npz`` the way a user's own
MedMNIST-style data would (28×28 grayscale by default), without downloading anything: each candidate
of a simulated app contributes the first channel of its first patch (for the pulmonary-embolism app:
the axial plane), resized with Pillow, under the app's own train/val/test split. The import then
makes the candidate's m augmented patches, as for any MedMNIST file. It is a stand-in with the
MedMNIST layout, not MedMNIST data.

``--classes K`` (K > 2) writes a multi-class stand-in instead: :func:`grading_arrays`, an ordinal grading
task (fundus-grading-like: the number and size of small bright lesions grow with the grade, adjacent grades
overlap) with an imbalanced class mix as real grading data has (grade k drawn with weight 0.6**k: for K = 5,
about 43/26/15/9/6 %; the last grade is rare, about 4-6 % of a pool). Two images per patient (left and right eye, graded independently around the patient's
own disease level) share a group, and the splits keep patients apart.

Usage::

    python -m simulate.medmnist_layout --app pulmonary-embolism --out pe28.npz [--size 28]
    python -m simulate.medmnist_layout --classes 5 --out grading5.npz       # 5 ordinal grades
    aift-data import-npz pe28.npz --out pe28.h5 --patches 8
    aift-sim --data pe28.h5
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from aift_tf.errors import AiftError
from aift_tf.files import atomic_path


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


def class_mix(classes: int) -> np.ndarray:
    """The grading stand-in's class probabilities: weight 0.6**k for grade k, normalised."""
    w = 0.6 ** np.arange(classes)
    return w / w.sum()


def _grade_image(rng, grade: int, classes: int, size: int) -> np.ndarray:
    """One uint8 (size, size) image of ``grade``: a smooth background, a vessel-like arc, and lesions whose
    count and size grow with the grade (Poisson counts: adjacent grades overlap)."""
    from scipy.ndimage import gaussian_filter

    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    img = 95 + 30 * gaussian_filter(rng.normal(size=(size, size)), sigma=size / 7) * (size / 7)
    img += rng.normal(0, 10)  # exposure varies between images
    cy, cx, r = rng.uniform(0.3, 0.7) * size, rng.uniform(-0.3, 0.1) * size, rng.uniform(0.6, 0.9) * size
    img -= 35 * np.exp(-((np.hypot(yy - cy, xx - cx) - r) ** 2) / (2 * (size / 40 + 0.6) ** 2))  # a vessel
    severity = grade / max(classes - 1, 1)
    count = rng.poisson(0.4 + 7.0 * severity ** 1.3)
    for _ in range(count):
        ly, lx = rng.uniform(0.12, 0.88, 2) * size
        radius = (size / 28) * rng.uniform(0.6, 0.9 + 0.9 * severity)
        img += rng.uniform(45, 80) * np.exp(-((yy - ly) ** 2 + (xx - lx) ** 2) / (2 * radius ** 2))
    img += rng.normal(0, 9, (size, size))
    return np.clip(img, 0, 255).astype(np.uint8)


def grading_arrays(classes: int = 5, n=(2400, 300, 600), size: int = 28, seed: int = 0) -> dict:
    """A K-class ordinal grading stand-in in MedMNIST layout (see the module docstring).

    Args:
        classes: K >= 3 grades (0 = healthy ... K-1 = most severe).
        n: images in (train, val, test); each patient contributes two (an odd count leaves one single).
        size: image side in pixels (>= 8).
        seed: every random draw follows it.

    Returns:
        ``{split_images (N, size, size) uint8, split_labels (N, 1), split_groups (N,), class_names}``.

    Example:
    >>> a = grading_arrays(5, n=(200, 40, 60), seed=0)
    >>> a["train_images"].shape, sorted(set(a["train_labels"].ravel().tolist()))
    ((200, 28, 28), [0, 1, 2, 3, 4])
    """
    if isinstance(classes, bool) or not isinstance(classes, (int, np.integer)) or classes < 3:
        raise AiftError(f"classes must be an integer >= 3 (2 classes: use --app); got {classes!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise AiftError(f"size must be an integer >= 8; got {size!r}")
    rng = np.random.default_rng(seed)
    mix = class_mix(int(classes))
    out = {"class_names": np.asarray([f"grade_{k}" for k in range(classes)])}
    next_group = 0
    for split, count in zip(("train", "val", "test"), n):
        patients = (int(count) + 1) // 2
        level = rng.choice(classes, size=patients, p=mix)  # the patient's disease level
        labels, groups, imgs = [], [], []
        for p in range(patients):
            for eye in range(2 if 2 * p + 1 < count or count % 2 == 0 else 1):
                # the second eye is graded around the patient's level (one grade lower with probability 0.3)
                g = int(level[p]) if eye == 0 else int(max(0, level[p] - (rng.random() < 0.3)))
                labels.append(g)
                groups.append(next_group + p)
                imgs.append(_grade_image(rng, g, classes, size))
        next_group += patients
        labels = np.asarray(labels[:count], dtype=np.int64)
        for k in range(classes):  # every grade present in every split (tiny splits: set the last images)
            if not (labels == k).any():
                j = len(labels) - 1 - k
                labels[j] = k
                imgs[j] = _grade_image(rng, k, classes, size)
        out[f"{split}_images"] = np.stack(imgs[:count])
        out[f"{split}_labels"] = labels.reshape(-1, 1)
        out[f"{split}_groups"] = np.asarray(groups[:count], dtype=np.int64)
    return out


def main(argv=None) -> None:
    import click

    from aift_tf.cli_support import run_cli

    @click.command(context_settings={"help_option_names": ["-h", "--help"]})
    @click.option("--app", default="pulmonary-embolism", show_default=True, help="Simulated application.")
    @click.option("--out", required=True, type=click.Path(dir_okay=False), help="The .npz to write.")
    @click.option("--size", type=click.IntRange(min=8), default=28, show_default=True, help="Image side in pixels.")
    @click.option("--app-seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
                  help="Seed of the simulated app (or of the grading stand-in with --classes).")
    @click.option("--classes", type=click.IntRange(min=2), default=2, show_default=True,
                  help="2: the simulated --app; K > 2: the K-grade ordinal grading stand-in (imbalanced mix).")
    @click.option("--images", type=(click.IntRange(min=1),) * 3, default=(2400, 300, 600), show_default=True,
                  metavar="TRAIN VAL TEST", help="With --classes K > 2: images per split.")
    def cli(app, out, size, app_seed, classes, images):
        """Write a simulated app as a MedMNIST-layout .npz (grayscale, one image per candidate)."""
        from aift_tf.store import open_store
        from simulate.apps import cached_store

        if classes > 2:
            for split, count in zip(("train", "val", "test"), images):
                if count < classes:
                    raise AiftError(f"--images: the {split} split needs at least {classes} images (one per "
                                    f"grade); got {count}")
            arrays = grading_arrays(classes, n=images, size=size, seed=app_seed)
        else:
            with open_store(cached_store(app, scale="quick", seed=app_seed)) as store:
                arrays = medmnist_arrays(store, size)
        with atomic_path(Path(out), suffix=".npz") as tmp:
            np.savez_compressed(tmp, **arrays)
        n = {k: v.shape[0] for k, v in arrays.items() if k.endswith("_images")}
        click.echo(f"{out}: {n}")

    run_cli(cli, argv, prog_name="python -m simulate.medmnist_layout")


if __name__ == "__main__":
    main(sys.argv[1:])
