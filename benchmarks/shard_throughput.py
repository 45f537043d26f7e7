"""Sharded-scoring throughput on this machine: the pool scored by 1 process vs by 2 shard processes.

    python benchmarks/shard_throughput.py [--candidates 3000] [--patches 8] [--size 32] [--repeat 2]

Writes a synthetic store and a small_cnn ``.keras`` model in a temp folder, then times, end to end
(process start to every part file written), ``aift score STORE --model M --shard 0/1`` and two
``aift score ... --shard i/2`` processes started together, plus ``aift score --merge``. The runs are
interleaved ``--repeat`` times; the table reports the median candidates/s and the ratio. Prints a
markdown table for docs/distributed.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_shards(store, model, folder, n):
    """Wall seconds for ``n`` shard processes started together (all must succeed)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "aift_tf.cli", "score", str(store), "--model", str(model),
                               "--shard", f"{i}/{n}", "--out", str(folder / f"part-{n}-{i}.h5"), "--quiet"],
                              env=env, stderr=subprocess.PIPE, text=True) for i in range(n)]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"shard failed: {err.strip()}")
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", type=int, default=3000)
    ap.add_argument("--patches", type=int, default=8)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()

    import numpy as np

    from aift_tf.store import write_store
    from aift_tf.zoo import build_model

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rng = np.random.default_rng(0)
        n, m, s = args.candidates, args.patches, args.size
        patches = rng.integers(0, 256, size=(n, m, s, s, 3), dtype=np.uint8)
        labels = (rng.random(n) < 0.3).astype(np.int64)
        store = folder / "pool.h5"
        write_store(store, patches, labels, np.arange(n) // 10, np.array(["train"] * n),
                    app="bench", class_names=["negative", "positive"])
        model = folder / "model.keras"
        build_model("small_cnn", (s, s, 3), 2, seed=0).save(model)
        load0 = os.getloadavg()[0]
        times = {1: [], 2: []}
        for _ in range(args.repeat):
            for k in (1, 2):
                times[k].append(run_shards(store, model, folder, k))
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "aift_tf.cli", "score", "--merge",
                        *[str(folder / f"part-2-{i}.h5") for i in range(2)], "--out", str(folder / "scores.h5"),
                        "--quiet"], check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        merge = time.perf_counter() - t0
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"- date: {datetime.now(timezone.utc):%Y-%m-%dT%H:%MZ}; machine: nproc={os.cpu_count()}, "
              f"{platform.processor() or platform.machine()}, no GPU; load average {load0:.1f} at start, "
              f"{os.getloadavg()[0]:.1f} at the end")
        print(f"- pool: {n} candidates x {m} patches {s}x{s}x3 (uint8), small_cnn, batch 256; "
              f"`python benchmarks/shard_throughput.py --candidates {n} --patches {m} --size {s} --repeat {args.repeat}`")
        print()
        print("| shards (processes on this node) | wall time, median (s) | candidates/s | ratio to 1 shard |")
        print("|---|---|---|---|")
        for k in (1, 2):
            print(f"| {k} | {med[k]:.1f} ({', '.join(f'{t:.1f}' for t in times[k])}) | {n / med[k]:.0f} | "
                  f"{med[1] / med[k]:.2f} |")
        print(f"\nmerge of the 2 parts: {merge:.1f} s (process start included)")


if __name__ == "__main__":
    main()
