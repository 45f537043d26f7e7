"""Refactoring guard: a fixed, seeded 3-round simulation gives the rounds.csv committed in
tests/data/behaviour_rounds.csv (labels and positives exactly, AUCs to float-rounding tolerance).

Two runs cover both ways the library feeds the network: the default (top block fine-tuned on cached
trunk features) and every layer trainable (patches through the whole model). Regenerate the expected file
only for an intended change of behaviour: ``python tests/test_behaviour_unchanged.py --write``.
"""

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

EXPECTED = Path(__file__).resolve().parent / "data" / "behaviour_rounds.csv"
RUNS = {
    "top-cached": ["--trainable", "top"],
    "all-patches": ["--trainable", "all"],
}
COMMON = ["--rounds", "3", "--query-size", "4", "--seeds", "2", "--steps", "4", "--full-epochs", "2",
          "--full-seeds", "1", "--lr", "0.0005", "--strategies", "aift,random-rft", "--weights", "none",
          "--initial", "6", "--no-export", "--quiet"]
EXACT = ("strategy", "seed", "round", "labels", "positives_found")
CLOSE = ("test_auc",)


def _store(path):
    from aift_tf.store import write_store

    # a hard task (a faint blob in noise), so that AUCs sit strictly between 0 and 1 and any change shows
    rng = np.random.default_rng(11)
    n, m, size = 96, 4, 32
    labels = (rng.random(n) < 0.4).astype(np.int64)
    labels[:2] = [0, 1]
    yy, xx = np.mgrid[:size, :size]
    patches = rng.normal(100, 30, size=(n, m, size, size, 3))
    for i in np.flatnonzero(labels):
        for j in range(m):
            cy, cx = size / 2 + rng.integers(-6, 7, size=2)
            patches[i, j] += (25 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 4.0 ** 2)))[..., None]
    group = np.arange(n) * 8 // n
    split = np.where(group >= 6, "test", np.where(group == 5, "val", "train"))
    write_store(path, np.clip(patches, 0, 255).astype(np.uint8), labels, group.astype(np.int64), split,
                app="behaviour-guard", class_names=["negative", "positive"])
    return path


def simulate(workdir) -> list:
    """Run both fixed simulations; rows [{run, strategy, seed, round, labels, positives_found, test_auc}]."""
    from simulate.sim_cli import main

    workdir = Path(workdir)
    store = _store(workdir / "guard.h5")
    rows = []
    for name, extra in RUNS.items():
        out = workdir / name
        with pytest.raises(SystemExit) as e:  # the console entry point exits
            main(["--data", str(store), *COMMON, *extra, "--out", str(out)])
        assert e.value.code == 0, f"{name}: aift-sim exited {e.value.code}"
        with open(out / "rounds.csv", newline="") as f:
            for r in csv.DictReader(f):
                rows.append({"run": name, **{k: r[k] for k in EXACT + CLOSE}})
    return rows


def test_fixed_simulation_gives_the_committed_rounds(tmp_path):
    got = simulate(tmp_path)
    with open(EXPECTED, newline="") as f:
        want = list(csv.DictReader(f))
    assert [{k: r[k] for k in ("run",) + EXACT} for r in got] == [{k: r[k] for k in ("run",) + EXACT} for r in want]
    for g, w in zip(got, want):
        for k in CLOSE:
            assert float(g[k]) == pytest.approx(float(w[k]), abs=1e-3), (g, w)  # float rounding differs between CPUs (AVX2 vs AVX-512)


if __name__ == "__main__" and "--write" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        rows = simulate(d)
    EXPECTED.parent.mkdir(exist_ok=True)
    with open(EXPECTED, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["run", *EXACT, *CLOSE])
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {EXPECTED} ({len(rows)} rows)")
