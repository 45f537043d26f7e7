"""Issue 23: multi-class stores (K >= 2) end to end.

`aift-sim` on a tiny 5-class store with a rare class and a class missing from the test split (macro one-vs-rest
AUC, per-class recall at the budget, what applies to binary stores only said), stores it must refuse (K = 1,
labels outside 0..K-1, class names that do not match the labels: one line, exit 2), and the `aift` annotation
round trip on a K = 5 store through the CLI (init, query, teach, status with per-class counts and kappa,
adjudicate, export). The labeling page's keys 1..K in Chromium: tests/test_labeling_page.py.
"""

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import make_multiclass_arrays

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
NAMES = ["grade_0", "grade_1", "grade_2", "grade_3", "grade_4"]


def _run(module_code, *args, timeout=600):
    code = f"import sys; from {module_code} import main; main(sys.argv[1:])"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=ENV,
                          timeout=timeout)


def _one_line_error(stderr):
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def _five_class_store(path, **kw):
    """140 candidates, 5 classes; grade_4 is 3% of the pool and grade_3 has no test candidate (seed 2)."""
    from aift_tf.store import write_store

    a = make_multiclass_arrays(n=140, seed=2, groups=14, mix=[.4, .3, .2, .1, .03], absent_from_test=(3,), **kw)
    write_store(path, a["patches"], a["labels"], a["groups"], a["split"], app="grading-test", class_names=NAMES)
    return a


# ---------------------------------------------------------------------------------------------- metrics


def test_macro_auc_is_sklearns_one_vs_rest_and_skips_a_missing_class():
    from sklearn.metrics import roc_auc_score

    from aift_tf.metrics import auc, class_recall

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 60)
    y[:4] = [0, 1, 2, 3]
    p = rng.dirichlet(np.ones(4), 60)
    p[np.arange(60), y] += 0.3 * rng.random(60)
    p /= p.sum(axis=1, keepdims=True)
    want = roc_auc_score(y, p, multi_class="ovr", average="macro")
    assert auc(y, p) == pytest.approx(want, abs=1e-12)
    # class 2 absent: sklearn raises or gives nan (by version); ours averages the classes present
    import warnings

    keep = y != 2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = roc_auc_score(y[keep], p[keep], multi_class="ovr", average="macro", labels=[0, 1, 2, 3])
    except ValueError:
        theirs = float("nan")
    assert math.isnan(theirs)
    got = auc(y[keep], p[keep])
    per = [roc_auc_score(y[keep] == c, p[keep][:, c]) for c in (0, 1, 3)]
    assert got == pytest.approx(np.mean(per), abs=1e-12)
    r = class_recall(y[keep], p[keep], 4)
    assert math.isnan(r[2]) and all(0 <= r[k] <= 1 for k in (0, 1, 3))
    pred = p[keep].argmax(axis=1)
    assert r[0] == pytest.approx(np.mean(pred[y[keep] == 0] == 0))
    assert class_recall([0, 1, 1], [0.2, 0.7, 0.4], 2) == [1.0, 0.5]  # binary: P(class 1)


# ---------------------------------------------------------------------------------------------- aift-sim


def test_aift_sim_on_a_five_class_store(tmp_path):
    store, out = tmp_path / "grades.h5", tmp_path / "run"
    a = _five_class_store(store)
    r = _run("simulate.sim_cli", "--data", store, "--rounds", "2", "--query-size", "6", "--seeds", "2",
             "--steps", "4", "--full-epochs", "2", "--full-seeds", "1", "--weights", "none", "--max-per-group", "2",
             "--no-export", "--quiet", "--workers", "1", "--out", out)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr

    cfg = json.loads((out / "config.json").read_text())
    plan = cfg["plan"]
    pool_counts = np.bincount(a["labels"][a["split"] == "train"], minlength=5)
    assert plan["num_classes"] == 5 and plan["pool_class_counts"] == pool_counts.tolist()
    assert plan["test_classes_missing"] == [3]
    assert [c["class"] for c in plan["initial"]["rare_classes"]] == [4]  # 3 of 100 pool candidates
    assert plan["initial"]["draws_max"] >= plan["initial"]["draws_min"] >= plan["initial"]["minimum"]

    with open(out / "rounds.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    jobs = {(r["strategy"], r["seed"]) for r in rows}
    assert {("full", "0"), ("aift", "0"), ("aift", "1"), ("random", "1"), ("random-rft", "0")} <= jobs
    for row in rows:
        rec = row["class_recall"].split(";")
        assert len(rec) == 5 and rec[3] == "nan"  # no test candidate of grade_3
        assert all(0 <= float(v) <= 1 for k, v in enumerate(rec) if k != 3)
        counts = [float(v) for v in row["class_labels"].split(";")]
        assert sum(counts) == int(row["labels"])
        assert row["sens_fp1"] == ""  # FROC: binary stores only
    # every round of the first seed: the initial set has every class twice
    first = next(r for r in rows if r["strategy"] == "aift" and r["seed"] == "0" and r["round"] == "1")
    assert min(float(v) for v in first["class_labels"].split(";")) >= 2

    # the saved last test predictions give the row's AUC (macro one-vs-rest over 4 classes) and recall
    from aift_tf.metrics import class_recall
    from simulate.run_folder import final_predictions

    d = final_predictions(out, "aift", 0)
    assert d["probability"].shape[1] == 5
    last = [r for r in rows if r["strategy"] == "aift" and r["seed"] == "0"][-1]
    from sklearn.metrics import roc_auc_score

    present = [0, 1, 2, 4]
    want = np.mean([roc_auc_score(d["labels"] == c, d["probability"][:, c]) for c in present])
    assert float(last["test_auc"]) == pytest.approx(want, abs=1e-9)
    np.testing.assert_allclose([float(v) for v in last["class_recall"].split(";")],
                               class_recall(d["labels"], d["probability"], 5), equal_nan=True)

    # --max-per-group 2: no query round took more than 2 candidates of one group
    from aift_tf.store import open_store

    state = next((out / "state" / "aift" / "seed0").glob("round-*")) / "learner"
    st = json.loads((state / "state.json").read_text())
    ids, rnd = np.asarray(st["labeled_ids"]), np.asarray(st["labeled_round"])
    with open_store(store) as s:
        for k in range(2, int(rnd.max()) + 1):
            _, c = np.unique(s.groups[ids[rnd == k]], return_counts=True)
            assert c.max() <= 2, (k, c)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_classes"] == 5 and summary["class_names"] == NAMES
    assert "macro one-vs-rest" in summary["auc_metric"] and summary["froc"] is None
    for name in ("aift", "random", "random-rft"):
        b = summary["strategies"][name]["per_class_recall_at_budget"]
        assert b["classes"] == NAMES and len(b["recall_mean"]) == 5 and b["recall_mean"][3] is None
        assert b["seeds"] == 2 and sum(b["labeled_mean"]) == pytest.approx(
            np.mean([int(r["labels"]) for r in rows if r["strategy"] == name and r["round"] == "3"]))
    diff = summary["strategies"]["aift"]["per_class_recall_at_budget"]["diff_vs"]
    assert diff["reference"] == "random" and [c["class"] for c in diff["per_class"]] == NAMES
    report = (out / "report.md").read_text()
    assert "macro one-vs-rest ROC AUC" in report and "apply to binary stores only" in report
    assert "The test split has no candidate of class 3 (grade_3)" in report
    assert "## Per class (at the planned budget)" in report and "| aift | " in report
    assert "rare classes: class 4 (grade_4) is 3.0% of the pool; the initial random set took" in report
    assert not (out / "positives_found.png").exists() and (out / "learning_curves.png").is_file()


def _edit(path, **attrs_or_labels):
    with h5py.File(path, "r+") as h5:
        for k, v in attrs_or_labels.items():
            if k == "labels":
                h5["labels"][...] = v
            else:
                h5.attrs[k] = v


def test_bad_multiclass_stores_one_line_exit_2(tmp_path):
    good = tmp_path / "good.h5"
    a = _five_class_store(good)
    import shutil

    one = tmp_path / "one.h5"
    shutil.copy(good, one)
    _edit(one, class_names=json.dumps(["only"]), labels=np.zeros_like(a["labels"]))
    outside = tmp_path / "outside.h5"
    shutil.copy(good, outside)
    lab = a["labels"].copy()
    lab[7] = 5
    _edit(outside, labels=lab)
    six = tmp_path / "six.h5"
    shutil.copy(good, six)
    _edit(six, class_names=json.dumps(NAMES + ["grade_5"]))

    for store, words in ((one, "class_names needs at least 2 classes, got ['only']"),
                         (outside, "label 5 of candidate 7 is outside [-1, 4] (5 classes)")):
        r = _run("simulate.sim_cli", "--data", store, "--out", tmp_path / f"run-{store.stem}", "--quiet")
        assert r.returncode == 2 and words in _one_line_error(r.stderr), r.stderr
        r = _run("aift_tf.cli", "init", tmp_path / f"p-{store.stem}", "--data", store, "--quiet")
        assert r.returncode == 2 and words in _one_line_error(r.stderr), r.stderr
    r = _run("simulate.sim_cli", "--data", six, "--out", tmp_path / "run-six", "--quiet")
    line = _one_line_error(r.stderr)
    assert r.returncode == 2 and "class 5 ('grade_5') of the 6 class names has 0 pool candidate(s)" in line
    assert not (tmp_path / "run-six").exists()


# ---------------------------------------------------------------------------------------------- aift


class _Result:
    """A CliRunner result with subprocess-like names (in-process: no TensorFlow start-up per command)."""

    def __init__(self, r):
        self.returncode, self.stdout, self.stderr = r.exit_code, r.stdout, r.stderr


def _aift(*args):
    from test_aift_cli import aift

    return _Result(aift(*args))


def _write(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_aift_round_trip_on_a_five_class_store(tmp_path):
    from sklearn.metrics import cohen_kappa_score

    store, project = tmp_path / "grades.h5", tmp_path / "proj"
    a = _five_class_store(store)
    truth = a["labels"]
    pool = np.flatnonzero(a["split"] == "train")
    r = _aift("init", project, "--data", store, "--epochs", "1", "--batch-size", "32", "--seed", "0", "--quiet")
    assert r.returncode == 0, r.stderr

    # a seed set without grade_4: recorded, no fine-tuning, and the answer names the missing class
    seed = [int(next(i for i in pool if truth[i] == k)) for k in range(4)]
    _write(tmp_path / "seed.csv", [{"id": i, "label": NAMES[truth[i]]} for i in seed])
    r = _aift("teach", project, tmp_path / "seed.csv", "--annotator", "lead")
    assert r.returncode == 0, r.stderr
    assert "no fine-tuning until every class has a label: class 4 (grade_4) has none yet" in r.stdout + r.stderr
    rare = int(next(i for i in pool if truth[i] == 4))
    _write(tmp_path / "seed2.csv", [{"id": rare, "label": "4"}])
    r = _aift("teach", project, tmp_path / "seed2.csv", "--annotator", "lead", "--quiet")
    assert r.returncode == 0, r.stderr
    assert (project / "checkpoints" / "round-001" / "state.json").is_file()

    # two annotators share part of the round; bob disagrees on one shared candidate
    r = _aift("query", project, "-n", "10", "--annotators", "alice,bob", "--overlap", "0.4", "--quiet")
    assert r.returncode == 0, r.stderr
    rnd = project / "round-001"
    info = json.loads((rnd / "query.json").read_text())
    shared = info["shared"]
    assert sorted(info["annotators"]) == ["alice", "bob"] and len(shared) >= 2
    page = (rnd / "gallery-alice.html").read_text()
    for k, name in enumerate(NAMES):  # one button per class, key k+1
        assert f'data-label="{k}"' in page and name in page
    answers = {}
    for who in ("alice", "bob"):
        rows = list(csv.DictReader(open(rnd / f"queries-{who}.csv", newline="")))
        for row in rows:
            i = int(row["id"])
            y = int(truth[i])
            if who == "bob" and i == shared[0]:
                y = (y + 2) % 5
            row["label"] = NAMES[y] if i % 2 else str(y)
            answers[(who, i)] = y
        _write(rnd / f"queries-{who}.csv", rows)
        r = _aift("teach", project, rnd / f"queries-{who}.csv")
        assert r.returncode == 0, r.stderr
    assert f"1 label(s) disagree with another annotator (ids {shared[0]})" in r.stderr

    out = _aift("status", project).stdout
    labeled = {i: int(truth[i]) for i in seed + [rare]}
    labeled.update({i: y for (who, i), y in answers.items() if i != shared[0]})
    counts = np.bincount(list(labeled.values()), minlength=5)
    # consensus per class: the disputed candidate is held out of the counts
    per_class = ", ".join(f"{n} {c}" for n, c in zip(NAMES, counts))
    assert per_class in out, out
    al = [answers[("alice", i)] for i in shared]
    bo = [answers[("bob", i)] for i in shared]
    k = cohen_kappa_score(al, bo, labels=list(range(5)))
    assert f"agreement alice / bob: Cohen's kappa {k:.2f} on {len(shared)} shared candidate(s)" in out, out

    r = _aift("adjudicate", project)
    assert r.returncode == 0, r.stderr
    adj = project / "adjudication-001"
    assert (f"id {shared[0]}: alice={NAMES[answers[('alice', shared[0])]]}, "
            f"bob={NAMES[answers[('bob', shared[0])]]}") in r.stdout
    _write(tmp_path / "adjudication-001-labels.csv", [{"id": shared[0], "label": NAMES[truth[shared[0]]],
                                                       "annotator": "lead"}])
    r = _aift("teach", project, tmp_path / "adjudication-001-labels.csv")
    assert r.returncode == 0 and "1 adjudication(s)" in r.stdout, r.stderr
    assert "disagreements" not in _aift("status", project).stdout
    assert (adj / "queries.csv").is_file()

    r = _aift("export", project, "--out", tmp_path / "model")
    assert r.returncode == 0, r.stderr
    from aift_tf.export import load_exported
    from aift_tf.store import open_store

    em = load_exported(tmp_path / "model")
    assert em.num_classes == 5
    with open_store(store) as s:
        p = em(s.read(s.ids("test")[:4]))["candidate_probability"]
    assert p.shape == (4, 5) and np.allclose(p.sum(axis=1), 1, atol=1e-4)
