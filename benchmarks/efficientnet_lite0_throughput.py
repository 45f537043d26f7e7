"""EfficientNet-Lite0 (ImageNet M0) scoring throughput: cached trunk vs the whole network, and the trunk-cache
build time for a 20k-patch store (benchmarks/RESULTS.md, issue 22 item 5).

A MedMNIST-like grayscale store (2,500 candidates x 8 patches = 20,000 patches, 28x28x1 uint8, seeded noise) is
scored by ``efficientnet_lite0`` with ``weights="imagenet"`` (resized inside the model to
``IMAGENET_INPUT_SIZE``, gray -> RGB), ``trainable="top"`` (aift-sim's default):

* trunk cache build: ``TrunkCache(store, trunk)`` in memory over all 20,000 patches (seconds, patches/s);
* scoring from the cache: ``predict_candidates(rest, cache, ids)`` over all 20,000 patches (patches/s);
* scoring the whole network: ``predict_candidates(model, store, ids)`` (``model.predict`` batches of the whole
  graph) over ``--full-candidates`` candidates (patches/s; a subset because it is the slow path).

    PYTHONPATH=. python benchmarks/efficientnet_lite0_throughput.py [--size S] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", type=int, default=2500)
    ap.add_argument("--m", type=int, default=8)
    ap.add_argument("--full-candidates", type=int, default=250)
    ap.add_argument("--size", type=int, default=None, help="backbone input size (default: IMAGENET_INPUT_SIZE)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)

    from aift_tf.pipelines import predict_candidates
    from aift_tf.store import open_store, write_store
    from aift_tf.trunk_cache import TrunkCache
    from aift_tf.zoo import build_model, split_frozen
    from aift_tf.zoo.efficientnet_lite0 import IMAGENET_INPUT_SIZE

    size = a.size or IMAGENET_INPUT_SIZE
    rng = np.random.default_rng(0)
    n, m = a.candidates, a.m
    res = {"cpu": _cpu_model(), "cpu_count": os.cpu_count(), "load_before": os.getloadavg(), "size": size,
           "patches": n * m, "patch_shape": [28, 28, 1]}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "store20k.h5"
        patches = rng.integers(0, 256, size=(n, m, 28, 28, 1), dtype=np.uint8)
        labels = (rng.random(n) < 0.3).astype(np.int64)
        split = np.where(np.arange(n) < int(0.8 * n), "train", np.where(np.arange(n) < int(0.9 * n), "val", "test"))
        write_store(path, patches, labels, np.arange(n) // 10, split, app="bench", class_names=["neg", "pos"])
        model = build_model("efficientnet_lite0", (28, 28, 1), 2, weights="imagenet", trainable="top", seed=0,
                            backbone_shape=(size, size, 3))
        trunk, rest = split_frozen(model)
        with open_store(path) as store:
            predict_candidates(model, store, np.arange(4))  # tracing, outside the timings
            t = time.perf_counter()
            cache = TrunkCache(store, trunk)
            build = time.perf_counter() - t
            ids = np.arange(n)
            predict_candidates(rest, cache, ids[:4])
            t = time.perf_counter()
            p_cached = predict_candidates(rest, cache, ids)
            cached_s = time.perf_counter() - t
            sub = ids[: a.full_candidates]
            t = time.perf_counter()
            p_full = predict_candidates(model, store, sub)
            full_s = time.perf_counter() - t
            diff = float(np.abs(p_cached[sub] - p_full).max())
    res.update(trunk_cache_build_s=build, trunk_cache_patches_s=n * m / build,
               trunk_cache_mb=n * m * int(np.prod(trunk.output_shape[1:])) * 4 / 2**20,
               cached_scoring_patches_s=n * m / cached_s, cached_scoring_s=cached_s,
               full_scoring_patches_s=len(sub) * m / full_s, full_scoring_patches=len(sub) * m,
               max_abs_diff=diff, load_after=os.getloadavg(),
               date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    print(json.dumps(res, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
