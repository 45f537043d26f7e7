"""Rounds until the target is crossed (issue 21): the schedule past the planned rounds, the stopping rule
(the report's isotonic first crossing), the cap, the per-round recipe that grows with the labeled set,
and (slow) runs through the CLI: extra rounds in rounds.csv, 1 and 2 workers alike, a resumed run equal
to an uninterrupted one, and a learner that has labeled the whole pool within 0.01 AUC of full training.
"""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from aift_tf.errors import AiftError

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------- fast


def test_extra_round_sizes_grow_geometrically_and_stop_at_the_cap():
    from simulate.config import extra_round_size

    plan = {"query_size": 53, "max_labels": 1074, "extra_growth": 0.25}
    labels, sizes = 477, []
    while True:
        b = extra_round_size(plan, labels)
        if b == 0:
            break
        sizes.append(b)
        labels += b
    assert labels == 1074 and sizes == [120, 150, 187, 140]  # 4 rounds from 44% to the whole pool
    assert extra_round_size(plan, 100) == 53  # never below the planned query size
    assert extra_round_size({"query_size": 53}, 477) == 0  # a plan from before the rule: no extra rounds
    assert extra_round_size(dict(plan, max_labels=500), 477) == 23


def test_crossed_is_the_reports_isotonic_first_crossing():
    from aift_tf.metrics import labels_to_target
    from simulate.config import crossed

    def rows(aucs, step=10):
        return [{"labels": i * step, "test_auc": a} for i, a in enumerate(aucs)]

    assert not crossed(rows([0.5, 0.7, 0.8]), 0.85)
    assert crossed(rows([0.5, 0.7, 0.86]), 0.85)
    # a single touch followed by a drop: the isotonic fit pools them below the target (not crossed)
    assert not crossed(rows([0.5, 0.86, 0.70]), 0.85)
    assert labels_to_target([0, 10, 20], [0.5, 0.86, 0.70], 0.85, smooth=True) is None
    assert crossed(rows([0.9, 0.8]), 0.85) == (labels_to_target([0, 10], [0.9, 0.8], 0.85, smooth=True) is not None)
    assert not crossed(rows([0.5]), 0.1)  # one point (M0 only) is no curve
    assert not crossed(rows([0.5, float("nan")]), 0.1)


def test_round_recipe_grows_with_the_labeled_set():
    from aift_tf.finetune import FineTuneConfig

    fixed = FineTuneConfig(epochs=1, steps_per_epoch=80, batch_size=64)
    grows = FineTuneConfig(epochs=1, steps_per_epoch=80, batch_size=64, min_passes=2)
    assert fixed.steps_for(8 * 1074) == 80
    assert grows.steps_for(8 * 100) == 80  # the floor
    assert grows.steps_for(8 * 1074) == math.ceil(2 * 8 * 1074 / 64)
    assert FineTuneConfig(epochs=3).steps_for(1000) is None  # one pass per epoch: no step count
    assert FineTuneConfig.from_dict(grows.to_dict()) == grows
    with pytest.raises(AiftError, match="min_passes"):
        FineTuneConfig(min_passes=0)


def _tiny(path):
    from aift_tf.store import write_store
    from conftest import make_separable_arrays

    a = make_separable_arrays(n=60, seed=0)
    write_store(path, a["patches"], a["labels"], a["groups"], a["split"], app="tiny-test",
                class_names=["negative", "positive"])
    return path


def test_plan_records_the_cap_and_refuses_a_bad_one(tmp_path):
    from aift_tf.store import open_store
    from simulate.config import DEFAULT_ROUND_PASSES, SimConfig, check_config, plan_run

    tiny = _tiny(tmp_path / "tiny.h5")
    with open_store(tiny) as store:
        pool = int(store.ids("train").size)
        p = plan_run(check_config(SimConfig(data=str(tiny), rounds=2, query_size=3, seeds=2)), store)
        assert p["max_labels"] == pool and p["round_passes"] == DEFAULT_ROUND_PASSES  # 4x the budget > pool
        p4 = plan_run(check_config(SimConfig(data=str(tiny), rounds=1, query_size=1, initial=4, seeds=2)), store)
        assert p4["max_labels"] == 4 * (max(p4["initial"]["sizes"].values()) + 1) < pool
        assert p["budget"] == round(p["initial"]["mean"]) + 6 and "isotonic" in p["until_target"]
        p = plan_run(check_config(SimConfig(data=str(tiny), rounds=2, query_size=3, seeds=2, max_labels=20,
                                            round_passes=0)), store)
        assert p["max_labels"] == 20 and p["round_passes"] is None
        with pytest.raises(AiftError, match=f"max_labels {pool + 1} is larger than the pool of {pool}"):
            plan_run(check_config(SimConfig(data=str(tiny), max_labels=pool + 1)), store)
        with pytest.raises(AiftError, match="max_labels 5 is below the planned budget"):
            plan_run(check_config(SimConfig(data=str(tiny), rounds=2, query_size=3, max_labels=5)), store)


def test_cli_refuses_a_bad_cap_with_one_line(tmp_path):
    tiny = _tiny(tmp_path / "tiny.h5")
    env = dict(__import__("os").environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    for bad, needle in ((["--max-labels", "0"], "--max-labels"), (["--max-labels", "1000"], "max_labels 1000"),
                        (["--round-passes", "-1"], "--round-passes")):
        out = tmp_path / f"run{bad[1]}"
        r = subprocess.run([sys.executable, "-m", "simulate.sim_cli", "--data", str(tiny), *bad, "--out", str(out),
                            "--quiet"], capture_output=True, text=True, env=env, timeout=120)
        err = r.stderr.strip()
        assert r.returncode == 2 and len(err.splitlines()) == 1 and err.startswith("error: ") and needle in err, err
        assert not out.exists()


def test_every_seed_shares_one_trunk_cache_file(tmp_path):
    """The trunk cache's key ignores the build seed (initializer configs), not the weights: the seeds of a
    run from one M0 share one side file (it was computed again for every seed: ~6 s and 120 MB each on PE)."""
    from aift_tf.store import open_store
    from aift_tf.trunk_cache import trunk_key
    from aift_tf.zoo import build_model, split_frozen

    tiny = _tiny(tmp_path / "tiny.h5")
    with open_store(tiny) as store:
        shape = tuple(store.patch_shape)
        m0 = tmp_path / "m0.weights.h5"
        build_model("small_cnn", shape, 2, weights=None, trainable="top", seed=5).save_weights(m0)
        keys = {trunk_key(store, split_frozen(build_model("small_cnn", shape, 2, weights=str(m0), trainable="top",
                                                          seed=s))[0]) for s in (0, 1, 2)}
        assert len(keys) == 1
        random_init = {trunk_key(store, split_frozen(build_model("small_cnn", shape, 2, weights=None, trainable="top",
                                                                 seed=s))[0]) for s in (0, 1)}
        assert len(random_init) == 2  # other weights, other features


# ----------------------------------------------------------------------------------------------- slow


def _rows(out):
    with open(out / "rounds.csv", newline="") as f:
        return list(csv.DictReader(f))


def _by_job(rows):
    jobs = {}
    for r in rows:
        jobs.setdefault((r["strategy"], int(r["seed"])), []).append(r)
    return jobs


def _sim(args, timeout=900):
    from test_sim import ENV

    return subprocess.run([sys.executable, "-m", "simulate.sim_cli", *map(str, args)], capture_output=True,
                          text=True, env=ENV, timeout=timeout)


@pytest.mark.slow
def test_jobs_query_past_the_budget_until_the_target_or_the_cap(tmp_path):
    """The guard store (a hard task): every strategy x seed, the random baselines too, continues past the
    planned rounds with growing rounds until its isotonic curve crosses target.json's target or reaches
    the cap; 1 and 2 workers give the same rounds.csv; a run killed after its planned rounds resumes
    to the same rows."""
    from simulate import run_folder as rf
    from simulate.config import crossed, extra_round_size
    from test_behaviour_unchanged import COMMON, _store

    store = _store(tmp_path / "guard.h5")
    args = ["--data", store, *COMMON, "--trainable", "top", "--max-labels", "40"]
    runs = {}
    for workers in ("1", "2"):
        out = runs[workers] = tmp_path / f"w{workers}"
        r = _sim([*args, "--workers", workers, "--out", out])
        assert r.returncode == 0, r.stderr[-3000:]
    strip = ("finetune_seconds", "scoring_seconds")
    one, two = ([{k: v for k, v in x.items() if k not in strip} for x in _rows(runs[w])] for w in ("1", "2"))
    assert one == two

    out = runs["1"]
    cfg = json.loads((out / "config.json").read_text())
    plan = cfg["plan"]
    assert plan["max_labels"] == 40 and plan["rounds"] == 3 and plan["budget"] == 6 + 3 * 4
    target = rf.read_target(out)["target_auc"]
    jobs = _by_job(_rows(out))
    extra_jobs = 0
    for (name, seed), rs in jobs.items():
        if name == "full":
            continue
        rounds = [int(r["round"]) for r in rs]
        labels = [int(r["labels"]) for r in rs]
        assert rounds == list(range(len(rs))) and labels == sorted(set(labels)), (name, seed)
        assert len(rs) >= 1 + plan["rounds"] + 1  # M0, the initial set, the planned rounds at least
        curve = [{"labels": int(r["labels"]), "test_auc": float(r["test_auc"])} for r in rs]
        planned = 2 + plan["rounds"]
        for k in range(planned, len(rs)):  # every extra round ran because the curve before it had not crossed
            assert not crossed(curve[:k], target), (name, seed, k)
            assert labels[k] - labels[k - 1] == extra_round_size(plan, labels[k - 1])
        # and the job stopped where the rule says: crossed, or at the cap
        assert crossed(curve, target) or labels[-1] == plan["max_labels"], (name, seed, labels)
        extra_jobs += len(rs) > planned
    assert extra_jobs >= 1  # the hard guard task: some job needs rounds past the budget

    # resume: SIGKILL a run once a job has saved its first round past the budget, then --resume
    import os
    import signal
    import time

    from test_sim import ENV

    name, seed = next(k for k, rs in jobs.items() if k[0] != "full" and len(rs) > planned)
    killed = tmp_path / "killed"
    p = subprocess.Popen([sys.executable, "-m", "simulate.sim_cli", *map(str, args), "--workers", "1", "--quiet",
                          "--out", str(killed)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sdir = rf.state_dir(killed, name, seed)
    deadline = time.time() + 600
    while p.poll() is None and time.time() < deadline and (rf.latest_round(sdir)[0] or 0) < planned:
        time.sleep(0.02)
    assert p.poll() is None, "the run ended before it could be killed"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not (killed / "summary.json").exists()
    r = _sim(["--out", killed, "--resume", "--quiet", "--workers", "1"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert [{k: v for k, v in x.items() if k not in strip} for x in _rows(killed)] == one


def _whole_pool_gap(store, tmp_path):
    """(full-training AUC, final AUC of `random` and `aift` after labeling the whole pool): the planned
    rounds (8, as the default's) end at the whole pool, one seed, the default recipe.

    Through :func:`simulate.experiment.run_experiment` (the loop aift-sim runs) without the report: the
    property is the learners', and the run folder's rounds.csv is all it reads."""
    from aift_tf.store import open_store
    from simulate.config import SimConfig, draw_initial
    from simulate.experiment import run_experiment

    rounds = 8  # the default's 8 query rounds after an initial set of about one round's worth
    with open_store(store) as s:
        pool_ids = s.ids("train")
        pool = int(pool_ids.size)
        first = draw_initial(pool_ids, s.labels[pool_ids], 0, pool // (rounds + 1)).size  # seed 0's cold start
    b = (pool - first) // rounds
    initial = pool - rounds * b  # >= first: the cold start draws exactly this many
    out = tmp_path / "whole"
    run_experiment(SimConfig(data=str(store), strategies=("random", "aift"), seeds=1, full_seeds=1, rounds=rounds,
                             query_size=b, initial=initial, export=False), out=out, workers=1)
    jobs = _by_job(_rows(out))
    full = float(jobs[("full", 0)][0]["test_auc"])
    finals = {}
    for name in ("random", "aift"):
        last = jobs[(name, 0)][-1]
        assert int(last["labels"]) == pool, (name, last)
        finals[name] = float(last["test_auc"])
    return full, finals


@pytest.mark.slow
def test_whole_pool_learner_ends_within_001_of_full_training_pe(tmp_path):
    from simulate.apps import cached_store

    full, finals = _whole_pool_gap(cached_store("pulmonary-embolism", scale="quick", seed=0), tmp_path)
    for name, auc in finals.items():
        assert auc >= full - 0.01, (name, auc, full)


@pytest.mark.slow
def test_whole_pool_learner_ends_within_001_of_full_training_medmnist_layout(tmp_path):
    """A MedMNIST-layout store (28x28 grayscale, one image per candidate, through `aift-data import-npz` with
    8 patches): the PE app's 1,074 pool candidates. A store cut to 400 was tried and is too small for this
    check: its test split has 23 positives, so one seed's AUC moves by several hundredths."""
    from test_sim import ENV

    npz = tmp_path / "pe28.npz"
    r = subprocess.run([sys.executable, "-m", "simulate.medmnist_layout", "--out", str(npz)], env=ENV,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    store = tmp_path / "pe28.h5"
    r = subprocess.run([sys.executable, "-m", "simulate.data_cli", "import-npz", str(npz), "--out", str(store),
                        "--patches", "8"], env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    full, finals = _whole_pool_gap(store, tmp_path)
    for name, auc in finals.items():
        assert auc >= full - 0.01, (name, auc, full)
