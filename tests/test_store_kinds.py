"""`aift` on every kind of store the importers make, through the CLI the way a user reaches it.

init → query → teach → query → teach → status → export, then a *fresh process* loads the newest checkpoint
(`aift query` in a subprocess) and the export (the SavedModel's serving signature, and ``model.keras``).
A fresh process matters: a checkpoint of a store whose patch shape makes M0 add ``pre_resize`` /
``pre_gray2rgb`` used to load only in a process that had already imported the zoo's custom layers, so
every 28×28 or grayscale project died at its first `aift query` while in-process tests passed.

Fast suite: 28×28×1 npz (MedMNIST layout), 40×40 grayscale PNG folder (tiny stores, one epoch).
Slow list: 28×28×3 and 32×32×3 npz, a 2-D DICOM folder, a volume import, a simulated app, a 5-class
store (the validation AUC is then the macro one-vs-rest AUC), and a
grayscale project started without weights (``--weights none``).
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from aift_tf import cli as aift_cli
from aift_tf.store import open_store

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------------------------
# running the CLIs
# ------------------------------------------------------------------------------------------------


class _Main:
    """click.testing needs a command object; wrap a CLI's main so run_cli's error mapping is exercised."""

    def __init__(self, main):
        self.main_fn = main
        self.name = "cli"

    def main(self, args=None, prog_name=None, **extra):
        self.main_fn(args)


def aift(*args):
    r = CliRunner().invoke(_Main(aift_cli.main), [str(a) for a in args])
    assert r.exit_code == 0, f"aift {' '.join(map(str, args))}: exit {r.exit_code}\n{r.output}"
    return r.output


def aift_data(*args):
    from simulate import data_cli

    r = CliRunner().invoke(_Main(data_cli.main), [str(a) for a in args])
    assert r.exit_code == 0, f"aift-data {' '.join(map(str, args))}: exit {r.exit_code}\n{r.output}"
    return r.output


def fresh_process(code, *args):
    """Run ``code`` in a new Python process (nothing imported yet); its stdout."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, f"fresh process failed (exit {r.returncode}):\n{r.stderr[-3000:]}"
    return r.stdout


# ------------------------------------------------------------------------------------------------
# stores of every kind (tiny, with a visible class signal)
# ------------------------------------------------------------------------------------------------


def _images(rng, n, size, channels, labels):
    """uint8 images: noise, class 1 carries a bright centre blob."""
    yy, xx = np.mgrid[:size, :size]
    blob = 110 * np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (2 * (size / 6) ** 2))
    x = rng.normal(80, 25, size=(n, size, size)) + labels[:, None, None] * blob
    x = np.clip(x, 0, 255).astype(np.uint8)
    return np.repeat(x[..., None], 3, axis=-1) if channels == 3 else x


def npz_store(tmp, size, channels):
    """MedMNIST layout (``train_images`` (n, H, W[, 3]) uint8, ``train_labels`` (n, 1)) → import-npz."""
    rng = np.random.default_rng(size * 10 + channels)
    arrays = {}
    for split, n in (("train", 48), ("val", 12), ("test", 16)):
        y = np.tile([0, 1, 0], n)[:n]
        arrays[f"{split}_images"] = _images(rng, n, size, channels, y)
        arrays[f"{split}_labels"] = y[:, None]
    np.savez(tmp / "data.npz", **arrays)
    aift_data("import-npz", tmp / "data.npz", "--out", tmp / "store.h5", "--patches", 3, "-q")
    return tmp / "store.h5"


def grading_store(tmp, classes=5):
    """A K-grade MedMNIST-layout stand-in (simulate.medmnist_layout --classes K) → import-npz."""
    from simulate.medmnist_layout import grading_arrays

    np.savez(tmp / "grades.npz", **grading_arrays(classes, n=(120, 30, 40), size=28, seed=1))
    aift_data("import-npz", tmp / "grades.npz", "--out", tmp / "store.h5", "--patches", 3, "-q")
    return tmp / "store.h5"


def folder_store(tmp, size=40):
    """A folder of grayscale PNGs, one sub-folder per class → import-folder."""
    from PIL import Image

    rng = np.random.default_rng(7)
    for k, name in enumerate(("benign", "malignant")):
        (tmp / "images" / name).mkdir(parents=True)
        for i, img in enumerate(_images(rng, 30, size, 1, np.full(30, k))):
            Image.fromarray(img, mode="L").save(tmp / "images" / name / f"img{i:02d}.png")
    aift_data("import-folder", tmp / "images", "--out", tmp / "store.h5", "--patches", 3,
              "--val-fraction", 0.15, "--test-fraction", 0.2, "-q")
    return tmp / "store.h5"


def dicom_store(tmp, size=24):
    """A folder of 2-D DICOM radiographs (MONOCHROME2, RescaleSlope/Intercept) → import-folder."""
    import pydicom

    from simulate import scan_phantom as SP

    rng = np.random.default_rng(3)
    for k, name in enumerate(("negative", "positive")):
        (tmp / "dicom" / name).mkdir(parents=True)
        for i, img in enumerate(_images(rng, 24, size, 1, np.full(24, k))):
            ph = SP.Phantom(size=(size, size, 1), angle_deg=0.0)
            series = tmp / f".series-{k}-{i}"
            SP.write_dicom_series(ph, series, seed=100 * k + i, hu=(img.astype(np.float32) * 4 - 500)[None])
            ds = pydicom.dcmread(next(series.iterdir()))
            ds.save_as(tmp / "dicom" / name / f"r{i:02d}.dcm")
    aift_data("import-folder", tmp / "dicom", "--out", tmp / "store.h5", "--patches", 3,
              "--val-fraction", 0.15, "--test-fraction", 0.2, "-q")
    return tmp / "store.h5"


def volume_store(tmp):
    """Six NIfTI phantom scans, bright spheres (class 1) and plain tissue (class 0) → import-volumes."""
    from simulate import scan_phantom as SP

    rng = np.random.default_rng(5)
    (tmp / "scans").mkdir()
    rows = []
    for v in range(6):
        ph = SP.Phantom()
        fracs = [(0.25, 0.3, 0.3), (0.75, 0.3, 0.7), (0.5, 0.75, 0.5)]
        for f in fracs:
            ph.spheres.append({"centre": ph.centre(np.add(f, rng.uniform(-0.03, 0.03, 3))).tolist(),
                               "radius": 4.0, "hu": 400.0})
        SP.write_image(ph, tmp / "scans" / f"ct{v:02d}.nii.gz")
        for s in ph.spheres:
            rows.append([f"ct{v:02d}", *(round(c, 3) for c in s["centre"]), 1])
        for f in ((0.5, 0.5, 0.1), (0.15, 0.85, 0.5), (0.85, 0.85, 0.9), (0.5, 0.1, 0.5), (0.85, 0.1, 0.2)):
            rows.append([f"ct{v:02d}", *(round(c, 3) for c in ph.centre(f)), 0])
    with open(tmp / "candidates.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["seriesuid", "coordX", "coordY", "coordZ", "class"])
        w.writerows(rows)
    aift_data("import-volumes", tmp / "scans", "--candidates", tmp / "candidates.csv", "--out", tmp / "store.h5",
              "--patches", 3, "--patch-size", 16, "--window", "-1000,500", "--val-fraction", 0.17,
              "--test-fraction", 0.17, "-q")
    return tmp / "store.h5"


def app_store(tmp):
    """A simulated application (quick scale)."""
    aift_data("generate", "--app", "colonoscopy-frames", "--out", tmp / "store.h5")
    return tmp / "store.h5"


KINDS = {
    "npz-28x28x1": lambda tmp: npz_store(tmp, 28, 1),
    "folder-40x40-gray": folder_store,
    "npz-28x28x3": lambda tmp: npz_store(tmp, 28, 3),
    "npz-32x32x3": lambda tmp: npz_store(tmp, 32, 3),
    "dicom-2d-24x24": dicom_store,
    "volumes-16x16x3": volume_store,
    "app-colonoscopy": app_store,
    "npz-28x28x1-5-grades": grading_store,
}
FAST = ("npz-28x28x1", "folder-40x40-gray")


# ------------------------------------------------------------------------------------------------
# the round trip
# ------------------------------------------------------------------------------------------------


def _answer(project, round_name, store_path, taught, out_csv):
    """The round's queries.csv answered from the ground truth, plus, while a class has no label yet, one pool
    candidate of it (the learner fine-tunes only once every class has a label)."""
    with open_store(store_path) as s:
        truth, pool = s.labels.copy(), s.ids("train")
    with open(Path(project) / round_name / "queries.csv", newline="") as fh:
        ids = [int(r["id"]) for r in csv.DictReader(fh)]
    labels = {i: int(truth[i]) for i in ids}
    have = set(taught.values()) | set(labels.values())
    for k in sorted(set(truth[pool].tolist()) - have):
        labels[next(int(i) for i in pool if truth[i] == k and int(i) not in taught and int(i) not in labels)] = k
    with open(out_csv, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "label"])
        w.writerows(sorted(labels.items()))
    taught.update(labels)
    return labels


LOAD_EXPORT = r"""
import json, sys
import numpy as np
import tensorflow as tf
out, m = sys.argv[1], int(sys.argv[2])
prov = json.load(open(out + "/provenance.json"))
h, w, c = prov["input_shape"]
x = np.random.default_rng(0).random((3, m, h, w, c)).astype("float32")
sig = tf.saved_model.load(out + "/saved_model").signatures["serving_default"]
o = sig(patches=tf.constant(x))
cand = o["candidate_probability"].numpy()
assert cand.shape == (3, prov["num_classes"]), cand.shape
assert np.allclose(cand.sum(axis=1), 1, atol=1e-4)
from aift_tf.zoo.layers import load_model
keras_model = load_model(out + "/model.keras")
p = np.asarray(keras_model(x.reshape(-1, h, w, c))).reshape(3, m, -1).mean(axis=1)
assert np.abs(p - cand).max() < 1e-4, np.abs(p - cand).max()
print(json.dumps({"ok": True, "names": [l.name for l in keras_model.layers[:4]]}))
"""


def round_trip(tmp, store_path, weights="m0"):
    project = tmp / "my project"  # a space: hints and paths must survive it
    aift("init", project, "--data", store_path, "--epochs", 1, "--batch-size", 16, "--weights", weights, "-q")
    # the first query in a fresh process: it loads checkpoints/round-000/model.keras from disk
    fresh_process("import sys; from aift_tf.cli import main; main(sys.argv[1:])", "query", project, "-n", 6, "-q")
    taught = {}
    _answer(project, "round-001", store_path, taught, tmp / "r1.csv")
    aift("teach", project, tmp / "r1.csv", "-q")
    aift("query", project, "-n", 6, "-q")
    _answer(project, "round-002", store_path, taught, tmp / "r2.csv")
    aift("teach", project, tmp / "r2.csv", "-q")
    ckpts = sorted(p.name for p in (project / "checkpoints").iterdir() if not p.name.startswith("."))
    assert ckpts[-1] == "round-002", ckpts
    status = aift("status", project)
    assert "teach rounds: 2" in status and f"labels: {len(taught)}" in status, status
    aift("export", project, "--out", tmp / "export", "-q")
    with open_store(store_path) as s:
        m = s.m
    loaded = json.loads(fresh_process(LOAD_EXPORT, tmp / "export", m).strip().splitlines()[-1])
    assert loaded["ok"]
    # the newest checkpoint in a fresh process too: a third query ranks with round 2's model
    fresh_process("import sys; from aift_tf.cli import main; main(sys.argv[1:])", "query", project, "-n", 4, "-q")
    assert (project / "round-003" / "queries.csv").is_file()
    return project


@pytest.mark.parametrize("kind", FAST)
def test_cli_round_trip_fast_kinds(kind, tmp_path):
    round_trip(tmp_path, KINDS[kind](tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("kind", [k for k in KINDS if k not in FAST])
def test_cli_round_trip_every_other_kind(kind, tmp_path):
    round_trip(tmp_path, KINDS[kind](tmp_path))


@pytest.mark.slow
def test_cli_round_trip_grayscale_without_weights(tmp_path):
    """``--weights none`` on a 28×28×1 store: every teach writes its checkpoint."""
    round_trip(tmp_path, npz_store(tmp_path, 28, 1), weights="none")
