"""Does the shipped offline M0 (small_cnn pre-trained at 32x32x3) help on a 28x28x1 (grayscale) store?

A linear probe on frozen trunk features (the 128-d input of the classifier; StandardScaler +
LogisticRegression(C=1), the same probe as the M0 card) compares, on 28x28x1 inputs:

* ``m0``          the shipped M0, adapted inside the model (``pre_resize`` 28→32, ``pre_gray2rgb``);
* ``random-same`` the same adapted graph, randomly initialised (``--random-seeds`` seeds);
* ``random``      the plain 28x28x1 small_cnn graph, randomly initialised (what ``aift`` used before);
* ``pixels``      raw pixels (no network).

Tasks (nothing here was tuned on these numbers):

1. ``pe-gray``: the simulated pulmonary-embolism app (quick scale, seed 0), axial channel only, resized
   32→28 (skimage, antialiased): binary, candidate-level test AUC (mean patch probability per candidate),
   probe trained on the whole train pool and on ``--small`` random pool candidates (repeated per seed).
2. ``probe-gray``: the held-out probe task of ``simulate.source_images`` (12 unseen shape × texture
   classes) rendered at 28x28x1: test accuracy with ``--probe-samples`` training images and with 10 per class.

    PYTHONPATH=. python benchmarks/m0_grayscale_probe.py            # ~8 min on a shared 2-core CPU
    PYTHONPATH=. python benchmarks/m0_grayscale_probe.py --json out.json

Measured (defaults, one run, shared 2-core AMD EPYC, 506 s; mean ± sd over seeds):

    pe-gray candidate test AUC   whole pool (1074)    100 pool candidates
      m0                         0.771                0.639 ± 0.046
      random-same                0.737 ± 0.011        0.647 ± 0.029
      random                     0.758 ± 0.010        0.644 ± 0.038
      pixels                     0.568                0.575 ± 0.084
    probe-gray accuracy          1800 images          10 per class
      m0                         0.488                0.390 ± 0.010
      random-same                0.163 ± 0.005        0.109 ± 0.005
      random                     0.174 ± 0.004        0.118 ± 0.009
      pixels                     0.080                0.088 ± 0.005

So the adapted M0 trunk transfers strongly to unseen classes of its own (procedural) image family in
grayscale at 28x28, but on the grayscale PE task its frozen features are only slightly better than a
random trunk's with the whole pool and no better with 100 labels: the M0 is a weak stand-in for
ImageNet features there (fine-tuning, not a linear probe, is what AIFT does; this measures the trunk only).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPE = (28, 28, 1)


def _models(random_seeds):
    from aift_tf.zoo import build_model
    from aift_tf.zoo.pretrained import default_m0
    from simulate.pretrain import feature_model

    path = default_m0("small_cnn", SHAPE)
    if path is None:
        raise SystemExit("no shipped M0 fits 28x28x1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 40-class head is skipped (a new 2-class head)
        out = {"m0": feature_model(build_model("small_cnn", SHAPE, 2, weights=path, seed=0))}
    for s in random_seeds:
        same = build_model("small_cnn", SHAPE, 2, seed=s, backbone_shape=(32, 32, 3))
        out[f"random-same/{s}"] = feature_model(same)
        out[f"random/{s}"] = feature_model(build_model("small_cnn", SHAPE, 2, seed=s))
    return out, str(path)


def _feats(fmodel, images):
    x = images.astype(np.float32) / 255.0
    return np.asarray(fmodel.predict(x, batch_size=512, verbose=0), np.float64).reshape(len(images), -1)


def _probe(ftr, ytr, fte, seed):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(ftr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings (raw pixels)
        clf = LogisticRegression(C=1.0, max_iter=3000, random_state=seed).fit(sc.transform(ftr), ytr)
    return clf.predict_proba(sc.transform(fte))


def _pe_gray():
    """(patches uint8 (n, m, 28, 28, 1), labels, split) of the PE app, axial channel, resized to 28."""
    from skimage.transform import resize

    from aift_tf.store import open_store
    from simulate.apps import cached_store

    with open_store(cached_store("pulmonary-embolism", scale="quick", seed=0)) as s:
        patches, labels = s.read_float(np.arange(s.n)), s.labels.copy()
        split = np.full(s.n, "", dtype=object)
        for name in ("train", "val", "test"):
            split[s.ids(name)] = name
    axial = patches[..., :1].astype(np.float64)  # read_float: [0, 1]
    n, m = axial.shape[:2]
    flat = axial.reshape(n * m, *axial.shape[2:])
    small = resize(flat, (n * m, 28, 28, 1), order=1, anti_aliasing=True, preserve_range=True)
    return np.round(small * 255).astype(np.uint8).reshape(n, m, 28, 28, 1), np.asarray(labels), split


def run_pe(models, small, seeds, log):
    from sklearn.metrics import roc_auc_score

    patches, labels, split = _pe_gray()
    n, m = patches.shape[:2]
    tr, te = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    log(f"pe-gray: {len(tr)} train / {len(te)} test candidates x {m} patches, {labels[tr].sum()} / "
        f"{labels[te].sum()} positive")
    feats = {}
    for name, fm in models.items():
        feats[name] = _feats(fm, patches.reshape(n * m, *SHAPE)).reshape(n, m, -1)
    feats["pixels"] = patches.reshape(n, m, -1).astype(np.float64) / 255.0

    def auc(name, train_ids, seed):
        f = feats[name]
        p = _probe(f[train_ids].reshape(len(train_ids) * m, -1), np.repeat(labels[train_ids], m),
                   f[te].reshape(len(te) * m, -1), seed)[:, 1]
        return float(roc_auc_score(labels[te], p.reshape(len(te), m).mean(1)))

    res = {}
    for name in feats:
        res[f"{name}|pool"] = auc(name, tr, 0)
    for s in seeds:
        rng = np.random.default_rng(100 + s)
        pos, neg = tr[labels[tr] == 1], tr[labels[tr] == 0]
        k = max(2, int(round(small * len(pos) / len(tr))))
        pick = np.concatenate([rng.choice(pos, k, replace=False), rng.choice(neg, small - k, replace=False)])
        for name in feats:
            res[f"{name}|{small}/{s}"] = auc(name, pick, s)
    return res


def run_probe(models, samples, seeds, log):
    from simulate import source_images as si

    t0 = time.time()
    xtr, ytr = si.generate(samples, "probe", SHAPE, seed=1)
    xte, yte = si.generate(samples, "probe", SHAPE, seed=1, start=samples)
    k = si.num_classes("probe")
    log(f"probe-gray: rendered {2 * samples} 28x28x1 images of {k} classes in {time.time() - t0:.0f} s")
    feats = {name: (_feats(fm, xtr), _feats(fm, xte)) for name, fm in models.items()}
    feats["pixels"] = (xtr.reshape(len(xtr), -1) / 255.0, xte.reshape(len(xte), -1) / 255.0)
    res = {}
    for name, (ftr, fte) in feats.items():
        res[f"{name}|{samples}"] = float(np.mean(_probe(ftr, ytr, fte, 0).argmax(1) == yte))
        for s in seeds:
            rng = np.random.default_rng(200 + s)
            pick = np.concatenate([rng.choice(np.flatnonzero(ytr == c), 10, replace=False) for c in range(k)])
            res[f"{name}|10-per-class/{s}"] = float(np.mean(_probe(ftr[pick], ytr[pick], fte, s).argmax(1) == yte))
    return res


def summarise(res):
    """Group 'model[/seed]|setting[/seed]' keys into mean ± sd over seeds per (model family, setting)."""
    groups = {}
    for key, v in res.items():
        model, setting = key.split("|")
        groups.setdefault((model.split("/")[0], setting.split("/")[0]), []).append(v)
    return {f"{m} | {s}": (float(np.mean(v)), float(np.std(v)), len(v)) for (m, s), v in groups.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--random-seeds", type=int, default=3)
    ap.add_argument("--small", type=int, default=100, help="pool candidates of the small-label PE probe")
    ap.add_argument("--probe-samples", type=int, default=1800)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.time()
    seeds = list(range(args.random_seeds))
    models, path = _models(seeds)
    out = {"m0": path, "pe-gray": summarise(run_pe(models, args.small, seeds, log)),
           "probe-gray": summarise(run_probe(models, args.probe_samples, seeds, log)),
           "seconds": round(time.time() - t0, 1)}
    for task, metric in (("pe-gray", "candidate test AUC"), ("probe-gray", "12-class test accuracy")):
        print(f"\n{task} ({metric}; mean ± sd over seeds, n = runs)")
        for key, (mean, sd, n) in out[task].items():
            print(f"  {key:36s} {mean:.3f} ± {sd:.3f}  (n={n})")
    print(f"\n{out['seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
