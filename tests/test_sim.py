"""aift-sim: argument errors, --help without TensorFlow, summary maths, and (slow) tiny end-to-end runs.

The default run has no TensorFlow training (< 30 s); the end-to-end and kill-and-resume tests train
real models on a 60-candidate store and are marked slow (`pytest -n 0 -m slow tests/test_sim.py`).
"""

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import make_separable_arrays

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
# --weights none: the reference and the resumed run must start from the same M0 even if the committed
# default M0 changes while the tests run (test_default_m0_is_resolved covers the default)
TINY = ["--rounds", "2", "--query-size", "4", "--seeds", "2", "--steps", "3", "--full-epochs", "2",
        "--lr", "0.003", "--strategies", "aift,random", "--weights", "none"]


def _sim(*args, timeout=900, cwd=None):
    return subprocess.run([sys.executable, "-m", "simulate.sim_cli", *map(str, args)], capture_output=True,
                          text=True, env=ENV, timeout=timeout, cwd=cwd)


def _write_tiny(path, n=60, seed=0):
    from aift_tf.store import write_store

    a = make_separable_arrays(n=n, seed=seed)
    write_store(path, a["patches"], a["labels"], a["groups"], a["split"], app="tiny-test",
                class_names=["negative", "positive"])
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _write_tiny(tmp_path_factory.mktemp("data") / "tiny.h5")


# ----------------------------------------------------------------------------------------------- fast


def test_help_does_not_import_tensorflow():
    code = ("import sys\nfrom simulate.sim_cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'tensorflow imported'\n"
            "print('NO-TF')\n")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "NO-TF" in r.stdout and "--strategies" in r.stdout and "--resume" in r.stdout
    assert time.perf_counter() - t0 < 20


def _bad_cases(tiny, tmp):
    (tmp / "notastore.h5").write_text("hello")
    (tmp / "full").mkdir()
    (tmp / "full" / "x.txt").write_text("x")
    (tmp / "notarun").mkdir()
    (tmp / "afile").write_text("x")
    return [
        ("unknown app", ["--app", "nope"], "pulmonary-embolism"),
        ("unknown strategy", ["--data", tiny, "--strategies", "aift,bogus"], "valid strategies"),
        ("alpha out of range", ["--data", tiny, "--strategies", "entropy@1.5"], "outside (0, 1]"),
        ("alpha zero", ["--data", tiny, "--strategies", "entropy+diversity@0"], "outside (0, 1]"),
        ("not a store", ["--data", tmp / "notastore.h5"], "notastore.h5"),
        ("missing store", ["--data", tmp / "missing.h5"], "missing.h5"),
        ("budget > pool", ["--data", tiny, "--budget", "1000"], "1000"),
        ("rounds > pool", ["--data", tiny, "--rounds", "50", "--query-size", "10"], "pool"),
        ("query size 0", ["--data", tiny, "--query-size", "0"], "--query-size"),
        ("steps and epochs", ["--data", tiny, "--steps", "5", "--epochs", "2"], "not both"),
        ("target delta", ["--data", tiny, "--target-delta", "0.9"], "--target-delta"),
        ("all three sizes", ["--data", tiny, "--rounds", "2", "--budget", "20", "--query-size", "3"], "at most two"),
        ("learning", ["--data", tiny, "--learning", "XYZ"], "ACFT-LQ"),
        ("existing dir", ["--data", tiny, "--out", tmp / "full"], "--resume"),
        ("resume non-run", ["--out", tmp / "notarun", "--resume"], "not an aift-sim run"),
        ("resume missing", ["--out", tmp / "nothere", "--resume"], "nothere"),
        ("unwritable dir", ["--data", tiny, "--out", tmp / "afile" / "run"], "afile"),
        ("app and data", ["--app", "colonoscopy-frames", "--data", tiny], "not both"),
        ("imagenet small_cnn", ["--data", tiny, "--weights", "imagenet"], "ImageNet"),
        ("missing weights file", ["--data", tiny, "--weights", tmp / "nope.weights.h5"], "nope.weights.h5"),
    ]


def test_bad_inputs_exit_2_one_line_nothing_written(tiny, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    cases = _bad_cases(tiny, tmp_path)

    def run(case):
        name, args, _ = case
        run_args = list(args) if "--out" in args else list(args) + ["--out", tmp_path / f"run-{name.replace(' ', '_')}"]
        return _sim(*run_args, "--quiet", timeout=120, cwd=tmp_path)

    with ThreadPoolExecutor(max_workers=4) as pool:  # subprocess start-up dominates; overlap it
        results = list(pool.map(run, cases))
    for (name, args, needle), r in zip(cases, results):
        out_given = "--out" in args
        err = r.stderr.strip()
        assert r.returncode == 2, (name, r.returncode, r.stderr[-2000:])
        assert "Traceback" not in r.stderr, (name, r.stderr)
        assert len(err.splitlines()) == 1 and err.startswith("error: "), (name, err)
        assert needle in err, (name, err)
        if not out_given:
            assert not (tmp_path / f"run-{name.replace(' ', '_')}").exists(), name
    assert not (tmp_path / "runs").exists()
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["x.txt"]
    assert list((tmp_path / "notarun").iterdir()) == []


def test_plan_and_config_without_tensorflow(tiny):
    from aift_tf.errors import AiftError
    from aift_tf.store import open_store
    from simulate.config import SCALE_DEFAULTS, SimConfig, check_config, draw_initial, plan_run

    c = check_config(SimConfig(data=str(tiny), strategies="AIFT, entropy@1/4 ,random,Random-RFT"))
    assert c.strategies == ("aift", "entropy@0.25", "random", "random-rft") and c.app is None
    with open_store(tiny) as store:
        pool = store.ids("train")
        p = plan_run(check_config(SimConfig(data=str(tiny), rounds=3, query_size=4)), store)
        assert p["rounds"] == 3 and p["query_size"] == 4 and p["seeds"] == 10
        sizes = p["initial"]["sizes"]
        assert set(sizes) == {str(k) for k in range(10)} and p["initial"]["mean"] == pytest.approx(np.mean(list(sizes.values())))
        for k in range(10):  # every seed's cold start: >= 2 labels of every class, shared by every strategy
            ids = draw_initial(pool, store.labels[pool], k, p["initial"]["minimum"])
            assert ids.size == sizes[str(k)] and np.bincount(store.labels[ids], minlength=2).min() >= 2
            np.testing.assert_array_equal(ids, draw_initial(pool, store.labels[pool], k, 4))
        assert p["initial"]["minimum"] == 4  # default: one round's worth (the query size)
        p = plan_run(check_config(SimConfig(data=str(tiny), rounds=2, query_size=3, initial=12, seeds=2)), store)
        assert p["initial"]["sizes"] == {"0": 12, "1": 12} and p["budget"] == 18
        p = plan_run(check_config(SimConfig(data=str(tiny))), store)  # defaults: 45% of the pool in 8 rounds
        assert p["budget"] <= max(round(0.45 * pool.size), p["initial"]["mean"] + p["rounds"]) and p["query_size"] >= 1
        assert p["steps"] == SCALE_DEFAULTS["quick"]["steps"] and p["lr"] == SCALE_DEFAULTS["quick"]["lr"]
        val = store.ids("val")
        assert p["early_stopping_split"] == ("val" if np.unique(store.labels[val]).size == 2 else None)
        with pytest.raises(AiftError, match=f"budget {pool.size + 1} labels is larger than the pool of {pool.size}"):
            plan_run(check_config(SimConfig(data=str(tiny), budget=pool.size + 1)), store)
    with pytest.raises(AiftError, match="given twice"):
        check_config(SimConfig(data=str(tiny), strategies="aift,entropy+diversity@0.25,aift"))
    with pytest.raises(AiftError, match="omega must be a number >= 1; got 0.5"):
        check_config(SimConfig(data=str(tiny), omega=0.5))


@pytest.mark.parametrize("flags,epochs,steps,patience", [
    ({}, 1, 537, None),  # the default: max(80 steps, 4 passes over 1074 x 8 patches / 64)
    ({"round_passes": 0}, 1, 80, None),  # exactly --steps
    ({"early_stopping": True}, 5, 16, 2),  # 80 steps in 5 validation checks, no floor
    ({"early_stopping": True, "round_passes": 0}, 5, 16, 2),
    ({"early_stopping": True, "round_passes": 4}, 5, 108, 2),  # the 4-pass floor split among the 5 checks
])
def test_round_recipe_of_each_flag_combination(tiny, flags, epochs, steps, patience):
    """What a round trains (simulate.jobs.round_finetune) for --round-passes / --early-stopping as the CLI parses
    them: the floor grows the steps with the labeled set (here 1074 candidates x 8 patches); --early-stopping
    splits the round into checks and drops the floor unless --round-passes is given."""
    from aift_tf.store import open_store
    from simulate.config import SimConfig, check_config, plan_run
    from simulate.jobs import round_finetune
    from simulate.plan import RunPlan

    cfg = check_config(SimConfig(data=str(tiny), **flags))
    with open_store(tiny) as store:
        plan = RunPlan.from_dict(plan_run(cfg, store))
    ft = round_finetune(cfg, plan, 3)
    assert (ft.epochs, ft.steps_for(1074 * 8), ft.patience) == (epochs, steps, patience)
    assert ft.steps_for(10) == (80 if epochs == 1 else 16)  # a small labeled set: the step floor


def test_run_config_is_written_once_and_read_back_as_it_was(tiny, tmp_path):
    """simulate.plan.RunConfig: config.json's content (plan keys in plan_run's order), read back equal and frozen."""
    import dataclasses

    from aift_tf.store import open_store
    from simulate import run_folder as rf
    from simulate.config import SimConfig, check_config, plan_run
    from simulate.plan import RunPlan, read_run, run_config

    cfg = check_config(SimConfig(data=str(tiny), rounds=2, query_size=3, seeds=2))
    with open_store(tiny) as store:
        plan = plan_run(cfg, store)
        run = run_config(cfg, Path(tiny), store, RunPlan.from_dict(plan), {"source": "none", "weights": None},
                         argv=["aift-sim", "--data", str(tiny)])
    assert run.plan.to_dict() == plan and list(run.plan.to_dict()) == list(plan)
    rf.write_config(tmp_path, run.to_dict())
    saved = json.loads(rf.config_path(tmp_path).read_text())
    assert list(saved) == ["format", "created", "command", "command_line", "settings", "plan", "m0", "data",
                           "versions", "machine", "notes"]
    back = read_run(tmp_path)
    assert back.settings == cfg and back.plan.query_size == 3 and back.to_dict() == saved
    with pytest.raises(dataclasses.FrozenInstanceError):
        back.plan.rounds = 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        back.settings.rounds = 5


def test_cold_start_draws_until_every_class_has_two_labels():
    from aift_tf.errors import AiftError
    from simulate.config import draw_initial

    labels = np.r_[np.zeros(95, int), np.ones(5, int)]
    ids = np.arange(100, 200)
    for seed in range(20):
        got = draw_initial(ids, labels, seed)
        y = labels[got - 100]
        assert np.bincount(y, minlength=2).min() == 2 and y[-1] == labels[got[-1] - 100]
        # the draw stops as soon as the rule is met: the prefix without the last draw misses it
        assert np.bincount(y[:-1], minlength=2).min() < 2
        assert draw_initial(ids, labels, seed, minimum=60).size == max(60, got.size)
    with pytest.raises(AiftError, match="class 1"):
        draw_initial(ids, np.r_[np.zeros(99, int), 1], 0)


def test_default_m0_is_resolved():
    from simulate import pretrain
    from simulate.config import SimConfig, check_config
    from simulate.experiment import resolve_m0

    m0 = resolve_m0(check_config(SimConfig()), (32, 32, 3))
    committed = pretrain.default_m0("small_cnn", (32, 32, 3))
    if committed is None:
        assert m0["source"] == "none" and m0["weights"] is None and "no offline pre-trained M0" in m0["note"]
    else:
        assert m0["source"] == "default-m0" and m0["path"] == str(Path(committed).resolve())
        assert len(m0["sha256"]) == 64 and isinstance(m0["card"], dict)
    assert resolve_m0(check_config(SimConfig(weights="none")), (32, 32, 3))["weights"] is None
    none_shape = resolve_m0(check_config(SimConfig()), (17, 17, 2))  # no M0 feeds 2 channels
    assert none_shape["source"] == "none"


def test_round_folders_are_round_nnn_and_an_old_run_still_resumes(tmp_path):
    """One round-folder name (aift_tf.files.round_name) for projects and run folders; a run folder written
    with the old ``round<r>`` state folders is still read (and its folders pruned after the next round)."""
    from aift_tf import project
    from aift_tf.files import round_name, round_number
    from simulate import run_folder as rf

    assert project.round_name is round_name
    assert (round_name(0), round_name(12), round_name(1234)) == ("round-000", "round-012", "round-1234")
    assert round_number("round-012") == 12 and round_number("round12") is None and round_number("round-1") is None
    out = tmp_path / "run"
    assert rf.round_tb_dir(out, "aift", 0, 3) == out / "tb" / "aift" / "seed0" / "round-003"
    assert rf.round_export_dir(out, "aift", 1, 2) == out / "models" / "aift" / "seed1" / "round-002"

    sdir = rf.state_dir(out, "aift", 0)
    assert rf.latest_round(sdir) == (None, None)
    for r in (1, 2):  # a hand-made old-style run: state/aift/seed0/round1, round2
        (sdir / f"round{r}").mkdir(parents=True)
        (sdir / f"round{r}" / "rows.json").write_text(json.dumps([{"round": r}]))
    (sdir / "notes").mkdir()  # not a round folder: ignored and kept
    r, p = rf.latest_round(sdir)
    assert (r, p) == (2, sdir / "round2") and rf.read_rows(p) == [{"round": 2}]

    p = rf.save_round(sdir, 3, [{"round": 3}])  # the next round: new name, old folders pruned
    assert p == sdir / "round-003" and rf.latest_round(sdir) == (3, p)
    assert sorted(q.name for q in sdir.iterdir()) == ["notes", "round-003"]

    (sdir / "round4").mkdir()  # the same round under both names: round-NNN wins
    (sdir / "round4" / "rows.json").write_text(json.dumps([{"round": "old"}]))
    p = rf.save_round(sdir, 4, [{"round": 4}])
    assert rf.latest_round(sdir) == (4, sdir / "round-004") and rf.read_rows(p) == [{"round": 4}]
    assert sorted(q.name for q in sdir.iterdir()) == ["notes", "round-004"]


# ----------------------------------------------------------------------------------------------- slow


def _rows(out):
    with open(out / "rounds.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def reference_run(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "ref"
    t0 = time.perf_counter()
    r = _sim("--data", tiny, *TINY, "--out", out)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r, time.perf_counter() - t0


@pytest.mark.slow
def test_end_to_end_every_output(reference_run, tiny):
    out, r, seconds = reference_run
    assert "Traceback" not in r.stderr
    assert "round 2" in r.stdout and "AUC" in r.stdout  # one summary line per round
    cfg = json.loads((out / "config.json").read_text())
    for key in ("settings", "plan", "m0", "data", "versions", "command", "command_line", "created"):
        assert key in cfg, key
    assert {"aift_tf", "tensorflow", "keras", "numpy"} <= set(cfg["versions"])
    assert cfg["data"]["path"] == str(Path(tiny).resolve()) and len(cfg["data"]["sha256"]) == 64
    assert cfg["settings"]["strategies"] == ["aift", "random"] and cfg["settings"]["seeds"] == 2
    assert cfg["plan"]["rounds"] == 2 and cfg["plan"]["query_size"] == 4 and "--query-size" in cfg["command"]
    assert cfg["m0"]["source"] == "none" and cfg["m0"]["weights"] is None
    init = cfg["plan"]["initial"]["sizes"]

    rows = _rows(out)
    assert list(rows[0]) == ["strategy", "seed", "round", "labels", "positives_found", "test_auc", "sens_fp1",
                             "sens_fp2", "sens_fp3", "finetune_seconds", "scoring_seconds", "stop_kappa",
                             "class_recall", "class_labels"]
    assert all(x["stop_kappa"] == "" for x in rows)  # no --stop: the column is there, empty
    # per-class columns (issue 23): K = 2 values each; labeled counts sum to the row's labels
    for x in rows:
        counts = [float(v) for v in x["class_labels"].split(";")]
        assert len(counts) == 2 and sum(counts) == int(x["labels"]), x
        assert len(x["class_recall"].split(";")) == 2
    key = [(x["strategy"], x["seed"], x["round"], int(x["labels"])) for x in rows]
    expect = [("full", "0", "1", 38), ("full", "1", "1", 38)]
    for st in ("aift", "random"):
        for k in ("0", "1"):
            expect += [(st, k, "0", 0), (st, k, "1", init[k]), (st, k, "2", init[k] + 4), (st, k, "3", init[k] + 8)]
    # the planned rounds, then (until the target is crossed, tests/test_rounds_to_target.py) maybe more
    planned = [x for x in key if x[0] == "full" or int(x[2]) <= 3]
    assert planned == expect
    for x in key:
        if x[0] != "full" and int(x[2]) > 3:
            assert x[3] > init[x[1]] + 8 and x[3] <= cfg["plan"]["max_labels"], x
    for x in rows:
        assert 0 <= float(x["test_auc"]) <= 1
    by = {(x["strategy"], x["seed"], x["round"]): x for x in rows}
    for k in ("0", "1"):  # every strategy of a seed shares M0 and the initial set
        for r in ("0", "1"):
            assert by[("aift", k, r)]["test_auc"] == by[("random", k, r)]["test_auc"]
            assert by[("aift", k, r)]["positives_found"] == by[("random", k, r)]["positives_found"]

    target = json.loads((out / "target.json").read_text())
    fulls = [float(by[("full", k, "1")]["test_auc"]) for k in ("0", "1")]
    assert target["target_auc"] == pytest.approx(np.mean(fulls) - 0.01)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ev = EventAccumulator(str(out / "tb" / "aift" / "seed0" / "eval"))
    ev.Reload()
    assert {"test_auc", "positives_found"} <= set(ev.Tags()["tensors"])  # tf.summary scalars, one per round
    ev = EventAccumulator(str(out / "tb" / "aift" / "seed0" / "round-002" / "train"))
    ev.Reload()
    tags = set(ev.Tags()["tensors"])  # the round's keras TensorBoard: per-epoch scalars, no per-step ones
    assert "epoch_loss" in tags and not any(t.startswith("batch_") for t in tags), tags
    curve = list(csv.DictReader(open(out / "full_training.csv")))
    assert {c["seed"] for c in curve} == {"0", "1"} and all(c["loss"] != "" for c in curve)
    assert all((c["val_auc"] != "") == (cfg["plan"]["early_stopping_split"] is not None) for c in curve)

    s = json.loads((out / "summary.json").read_text())
    assert s["pool_size"] == 38 and s["test_size"] > 0 and s["seeds"] == 2 and s["complete"]
    assert set(s["full_training"]) >= {"auc_mean", "auc_std", "ci95", "epochs_run_mean"}
    assert s["m0"]["source"] == "none" and s["verdict"][0].startswith("NO PRE-TRAINED M0")
    for name in ("aift", "random"):
        st = s["strategies"][name]
        assert len(st["labels"]) >= 4 and len(st["auc_mean"]) >= 4 and st["unstable_rounds"] is not None
    sv = s["strategies"]["aift"]["savings"]
    assert sv["reference"] == "random" and sv["target_auc"] == pytest.approx(target["target_auc"])
    assert sv["ci95"] is None or sv["ci95"][0] <= sv["estimate"] <= sv["ci95"][1]

    report = (out / "report.md").read_text()
    assert "aift" in report and "random" in report and "savings" in report.lower()
    assert "learning_curves.png" in report and "positives_found.png" in report
    assert "## Savings" in report and "paired" in report
    for png in ("learning_curves.png", "positives_found.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"

    for name in ("aift", "random"):
        model_dir = out / "models" / name / "seed0"
        assert model_dir.is_dir() and not (out / "models" / name / "seed1").exists()  # exports: first seed
        tb = list((out / "tb" / name / "seed0").rglob("events.out.tfevents*"))
        assert tb, name
        last = max(int(x["round"]) for x in rows if x["strategy"] == name and x["seed"] == "0")
        state = out / "state" / name / "seed0" / f"round-{last:03d}"
        assert (state / "learner" / "state.json").is_file() and (state / "rows.json").is_file()
    provenance = list((out / "models" / "aift" / "seed0").rglob("*.json"))
    assert provenance
    prov_text = " ".join(p.read_text() for p in provenance)
    assert cfg["data"]["sha256"] in prov_text

    import tensorflow as tf

    saved = [p.parent for p in (out / "models" / "aift" / "seed0").rglob("saved_model.pb")]
    assert saved, "no SavedModel exported"
    loaded = tf.saved_model.load(str(saved[0]))
    assert loaded.signatures

    # report.py rebuilds the same summary from the finished folder
    from simulate.report import build_report

    again = build_report(out)
    assert again["strategies"]["aift"]["auc_mean"] == s["strategies"]["aift"]["auc_mean"]


def _auc_numbers(summary):
    out = {"full": summary["full_training"]["auc_mean"], "target": summary["target"]["target_auc"]}
    for name, st in summary["strategies"].items():
        out[name] = st["auc_mean"]
        out[name + ".labels"] = st["labels"]
    return out


@pytest.mark.slow
def test_kill_and_resume_reproduces_summary(reference_run, tiny, tmp_path):
    ref_out, _, _ = reference_run
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "simulate.sim_cli", "--data", str(tiny), *TINY, "--out", str(out), "--quiet"]
    p = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    marker = out / "state" / "aift" / "seed0" / "round-001"
    deadline = time.time() + 600
    while not marker.is_dir() and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.is_dir(), p.stderr.read() if p.poll() is not None else "timeout"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not (out / "summary.json").exists()
    # rounds.csv (if written) is complete CSV: header + whole rows
    if (out / "rounds.csv").exists():
        rows = _rows(out)
        assert all(r["scoring_seconds"] != "" for r in rows)

    # an explicitly conflicting option is rejected, an identical one accepted
    r = _sim("--out", out, "--resume", "--seeds", "3", "--quiet")
    assert r.returncode == 2 and "conflicts" in r.stderr and "Traceback" not in r.stderr
    r = _sim("--out", out, "--resume", "--seeds", "2", "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == "" and r.stderr.strip() == ""  # --quiet

    ref = json.loads((ref_out / "summary.json").read_text())
    got = json.loads((out / "summary.json").read_text())
    a, b = _auc_numbers(ref), _auc_numbers(got)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(np.asarray(b[k], float), np.asarray(a[k], float), rtol=0, atol=1e-6, err_msg=k)
    ref_rows, got_rows = _rows(ref_out), _rows(out)
    assert [(x["strategy"], x["round"], x["labels"], x["positives_found"]) for x in ref_rows] == \
           [(x["strategy"], x["round"], x["labels"], x["positives_found"]) for x in got_rows]
    for x, y in zip(ref_rows, got_rows):
        assert math.isclose(float(x["test_auc"]), float(y["test_auc"]), abs_tol=1e-6), (x, y)
