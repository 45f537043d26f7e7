"""Which input size should ``efficientnet_lite0 --weights imagenet`` resize a store's patches to?

For each candidate size S (64, 96, 128, 224) the model is built for 28x28x1 patches with the converted ImageNet
weights, resized to SxS inside the graph, ``trainable="top"`` (aift-sim's default; the trunk cache holds the
activations before block7a):

* speed (synthetic 28x28x1 patches, batch 256): trunk patches/s (filling the trunk cache once per patch),
  rest patches/s (scoring a round from the cache), whole-network ``model.predict`` patches/s, cached bytes a patch;
* quality: a linear probe on the frozen ImageNet features (global-average-pooled top activation; StandardScaler
  + LogisticRegression(C=1), the probe of benchmarks/m0_grayscale_probe.py) on the simulated pulmonary-embolism
  app (quick scale, seed 0; axial channel resized to 28x28x1 as in that benchmark), ``--train`` pool candidates,
  candidate-level test AUC. A simulated app, not BreastMNIST (real data is a check, never a target).

    PYTHONPATH=. python benchmarks/efficientnet_lite0_size.py [--sizes 64,96,128,224] [--json out.json]

Measured 2026-12-04 18:12-18:39 UTC, AMD EPYC, 2 cores, SHARED (load average 5-9 throughout, so the speeds are
noisy, roughly 2-4x below a quiet machine); 1024 synthetic patches per speed, probe on 300 pool / 564 test
candidates x 8 patches:

    size  trunk p/s  rest p/s  whole p/s  cached bytes/patch  PE probe test AUC
      64      877      2986       465        3,072             0.730
      96      237      2126       210        6,912             0.730
     128      222      1074        97       12,288             0.716
     160      100      1049        47       19,200             0.727
     192       34       680        34       27,648             0.763
     224       29       502        24       37,632             0.802

Choice (IMAGENET_INPUT_SIZE = 224): the frozen ImageNet features are no better at 64-160 than at 64 (0.72-0.73),
improve at 192 and are clearly best at 224, the resolution the weights were trained at (+0.07). With the trunk
cached once per patch the trunk's 8-30x higher cost is paid once (a 20k-patch store: benchmarks/RESULTS.md); what
recurs every round is the rest (block7a + top conv on a 7x7 grid), ~2x the cost at 128 and ~6x the cost at 64.
The choice was made after seeing these numbers (no rule was written down first).

The measurement and the choice are recorded in benchmarks/RESULTS.md.
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


def _rate(fn, x, repeat=2):
    fn(x[:256])  # warm-up (tracing)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - t)
    return len(x) / best


def speed(size, n=1024):
    import keras

    from aift_tf.zoo import build_model, split_frozen

    model = build_model("efficientnet_lite0", SHAPE, 2, weights="imagenet", trainable="top", seed=0,
                        backbone_shape=(size, size, 3))
    trunk, rest = split_frozen(model)
    x = np.random.default_rng(0).random((n,) + SHAPE, dtype=np.float32)
    feats = trunk.predict(x, batch_size=256, verbose=0)
    out = {
        "size": size,
        "trunk_patches_s": _rate(lambda a: trunk.predict(a, batch_size=256, verbose=0), x),
        "rest_patches_s": _rate(lambda a: rest.predict(a, batch_size=256, verbose=0), feats),
        "full_patches_s": _rate(lambda a: model.predict(a, batch_size=256, verbose=0), x),
        "feature_shape": list(feats.shape[1:]),
        "feature_bytes": int(np.prod(feats.shape[1:])) * 4,
    }
    del model, trunk, rest
    keras.backend.clear_session()
    return out


def _pe_gray(n_train, seed=0):
    from skimage.transform import resize

    from aift_tf.store import open_store
    from simulate.apps import cached_store

    with open_store(cached_store("pulmonary-embolism", scale="quick", seed=0)) as s:
        rng = np.random.default_rng(seed)
        tr, te = s.ids("train"), s.ids("test")
        tr = np.sort(rng.choice(tr, min(n_train, len(tr)), replace=False))
        ids = np.concatenate([tr, te])
        patches, labels = s.read_float(ids), s.labels[ids]
    axial = patches[..., :1].astype(np.float64)
    n, m = axial.shape[:2]
    small = resize(axial.reshape(n * m, *axial.shape[2:]), (n * m, 28, 28, 1), order=1, anti_aliasing=True)
    return small.astype(np.float32).reshape(n, m, *SHAPE), labels, len(tr)


def quality(size, data):
    import keras
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    from aift_tf.zoo import build_model

    patches, labels, n_tr = data
    n, m = patches.shape[:2]
    model = build_model("efficientnet_lite0", SHAPE, 2, weights="imagenet", seed=0, backbone_shape=(size, size, 3))
    fmodel = keras.Model(model.input, model.get_layer("backbone_gap").output)
    t = time.perf_counter()
    f = fmodel.predict(patches.reshape(n * m, *SHAPE), batch_size=256, verbose=0).astype(np.float64)
    secs = time.perf_counter() - t
    f = f.reshape(n, m, -1)
    sc = StandardScaler().fit(f[:n_tr].reshape(n_tr * m, -1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = LogisticRegression(C=1.0, max_iter=3000, random_state=0).fit(
            sc.transform(f[:n_tr].reshape(n_tr * m, -1)), np.repeat(labels[:n_tr], m))
    p = clf.predict_proba(sc.transform(f[n_tr:].reshape((n - n_tr) * m, -1)))[:, 1].reshape(n - n_tr, m).mean(1)
    keras.backend.clear_session()
    return {"size": size, "probe_test_auc": float(roc_auc_score(labels[n_tr:], p)), "probe_seconds": secs,
            "probe_train_candidates": int(n_tr), "probe_test_candidates": int(n - n_tr), "m": int(m)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="64,96,128,224")
    ap.add_argument("--train", type=int, default=300, help="pool candidates the probe is trained on")
    ap.add_argument("--no-quality", action="store_true")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    sizes = [int(v) for v in a.sizes.split(",")]
    res = {"uptime_before": os.getloadavg(), "speed": [], "quality": []}
    for s in [] if a.no_speed else sizes:
        r = speed(s)
        res["speed"].append(r)
        print(f"S={s:3d}  trunk {r['trunk_patches_s']:7.1f} p/s   rest {r['rest_patches_s']:8.1f} p/s   "
              f"full {r['full_patches_s']:7.1f} p/s   features {r['feature_shape']} {r['feature_bytes']} B",
              flush=True)
    if not a.no_quality:
        data = _pe_gray(a.train)
        for s in sizes:
            r = quality(s, data)
            res["quality"].append(r)
            print(f"S={s:3d}  PE probe test AUC {r['probe_test_auc']:.3f}  ({r['probe_train_candidates']} train / "
                  f"{r['probe_test_candidates']} test candidates x {r['m']}; features {r['probe_seconds']:.0f} s)",
                  flush=True)
    res["uptime_after"] = os.getloadavg()
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
