"""`aift`: the annotation-round CLI (init / query / teach / status / export), with real TensorFlow training.

A module-scoped base project (tiny separable store, small_cnn, 1 epoch) is initialised and queried once;
each test works on a copy. Labels come from the store's ground truth, written into the CSVs the way an
annotator would (class indices and class names mixed).
"""

import csv
import hashlib
import html
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from aift_tf import cli as aift_cli
from aift_tf.store import open_store, write_store
from conftest import make_separable_arrays

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ["negative", "positive"]


class _Main:
    """click.testing needs a command object; wrap aift_tf.cli.main so run_cli's error mapping is exercised."""

    name = "aift"

    def main(self, args=None, prog_name=None, **extra):
        aift_cli.main(args)


def aift(*args):
    return CliRunner().invoke(_Main(), [str(a) for a in args])


def aift_subprocess(*args, env=None):
    code = "import sys; from aift_tf.cli import main; main(sys.argv[1:])"
    e = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    e.update(env or {})
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=e,
                          timeout=300)


def one_line_error(stderr):
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def tree_hash(folder):
    h = hashlib.sha256()
    for p in sorted(Path(folder).rglob("*")):
        h.update(str(p.relative_to(folder)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_rows(path, rows, fields=None):
    fields = fields or list(rows[0].keys())
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def answer(queries_csv, store_path, skip=()):
    """Fill the label column from the ground truth, as an annotator would (names and indices mixed)."""
    with open_store(store_path) as s:
        truth = s.labels.copy()
    rows = read_rows(queries_csv)
    for k, r in enumerate(rows):
        i = int(r["id"])
        r["label"] = "" if i in skip else (CLASSES[truth[i]] if k % 2 else str(truth[i]))
    write_rows(queries_csv, rows)
    return {int(r["id"]): int(truth[int(r["id"])]) for r in rows if int(r["id"]) not in skip}


def first_labels(project, store_path, out_csv):
    """round-001 answered from the ground truth, plus a pool candidate of each class it lacks, written as the
    free-form CSV ``out_csv``: teaching it fine-tunes (the learner refuses a labeled set without every class).

    Returns the {id: label} it holds.
    """
    truth = answer(Path(project) / "round-001" / "queries.csv", store_path)
    with open_store(store_path) as s:
        labels, pool = s.labels.copy(), s.ids("train").tolist()
    for k in range(len(CLASSES)):
        if k not in truth.values():
            i = next(i for i in pool if labels[i] == k and i not in truth)
            truth[i] = k
    write_rows(out_csv, [{"id": i, "label": lab} for i, lab in truth.items()])
    return truth


def ledger(project):
    return [json.loads(ln) for ln in (Path(project) / "ledger.jsonl").read_text().splitlines() if ln.strip()]


def checkpoint_rounds(project):
    return sorted(p.name for p in (Path(project) / "checkpoints").iterdir() if not p.name.startswith("."))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A store + a project after `init` and `query -n 8` (round-001 open)."""
    d = tmp_path_factory.mktemp("aift")
    a = make_separable_arrays(n=56, seed=3, pos_fraction=0.4)
    store = d / "tiny.h5"
    write_store(store, a["patches"], a["labels"], a["groups"], a["split"], app="tiny <test>", class_names=CLASSES)
    project = d / "base"
    r = aift("init", project, "--data", store, "--epochs", 1, "--batch-size", 32, "--seed", 0, "--quiet")
    assert r.exit_code == 0, r.output
    r = aift("query", project, "-n", 8, "--quiet")
    assert r.exit_code == 0, r.output
    return {"store": store, "project": project, "arrays": a}


@pytest.fixture
def project(base, tmp_path):
    dst = tmp_path / "proj"
    shutil.copytree(base["project"], dst)
    return dst


# ------------------------------------------------------------------------------------------------
# fast checks
# ------------------------------------------------------------------------------------------------


def test_help_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from aift_tf.cli import main\n"
        "for cmd in ([], ['init'], ['query'], ['teach'], ['status'], ['export'], ['recover'], ['adjudicate']):\n"
        "    try:\n"
        "        main(cmd + ['--help'])\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, (cmd, e.code)\n"
        "print('TF' if any(m == 'tensorflow' or m.startswith('tensorflow.') or m == 'keras' for m in sys.modules) else 'NO-TF')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("NO-TF")
    assert "--relabel" in r.stdout and "--omega" in r.stdout and "--annotators" in r.stdout and "--annotator" in r.stdout


def test_init_layout_and_query_round(base):
    p = base["project"]
    cfg = json.loads((p / "config.json").read_text())
    for key in ("store", "store_sha256", "model", "weights", "trainable", "strategy", "learning", "omega",
                "seed", "finetune", "class_names"):
        assert key in cfg
    assert cfg["finetune"]["epochs"] == 1 and cfg["learning"] == "ACFT-LQ"
    assert cfg["weights"].endswith("small_cnn_32x32x3.weights.h5") and cfg["m0"]["source"] == "default-m0"
    assert (p / "ledger.jsonl").read_text() == ""
    state = json.loads((p / "checkpoints" / "round-000" / "state.json").read_text())
    assert state["round"] == 0 and state["labeled_ids"] == []
    rows = read_rows(p / "round-001" / "queries.csv")
    assert list(rows[0].keys()) == ["id", "group", "score", "probability", "label"]
    assert len(rows) == 8 and all(r["label"] == "" for r in rows)
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    with open_store(base["store"]) as s:
        pool = set(s.ids("train").tolist())
        assert all(int(r["group"]) == s.groups[int(r["id"])] for r in rows)
    assert {int(r["id"]) for r in rows} <= pool
    assert all(0 <= float(r["probability"]) <= 1 for r in rows)
    page = (p / "round-001" / "gallery.html").read_text()
    assert "tiny &lt;test&gt;" in page and "<test>" not in page  # the app name is escaped
    # a labeling page that makes no network request: no URL, no external script/style/link, a CSP forbidding any
    assert "http://" not in page and "https://" not in page and "<script src" not in page and "<link" not in page
    assert "default-src 'none'" in html.unescape(page) and "connect-src 'none'" in html.unescape(page)
    assert 'data-download="round-001-labels.csv"' in page and "Download labels" in page
    ids_in_page = [int(r["id"]) for r in rows]
    positions = [page.index(f'id="c{i}"') for i in ids_in_page]
    assert positions == sorted(positions)  # one card per candidate, ordered by score
    for i in ids_in_page:
        assert (p / "round-001" / "patches" / f"{i}.png").is_file()
        assert f'src="patches/{i}.png"' in page


def test_gallery_escapes_user_strings():
    from aift_tf.gallery import render_html

    evil = '<img src=x onerror=alert(1)>"&'
    rows = [{"id": 3, "group": 0, "score": 0.5, "probability": 0.25, "predicted": evil}]
    page = render_html(rows, {"round": 1, "class_names": [evil, "b", "c"], "strategy": evil},
                       project_name=evil, app=evil, m=4, group_names=[evil])
    assert evil not in page and "onerror=alert(1)&gt;" in page


def _bad_teach(project, csv_path, *expected, relabel=False):
    before = tree_hash(project)
    r = aift("teach", project, csv_path, *(["--relabel"] if relabel else []))
    assert r.exit_code == 2, (r.output, r.stderr)
    line = one_line_error(r.stderr)
    for piece in expected:
        assert piece in line, (piece, line)
    assert tree_hash(project) == before
    return line


def test_teach_validation_errors_leave_project_unchanged(project, base, tmp_path):
    q = project / "round-001" / "queries.csv"
    rows = read_rows(q)
    ids = [int(r["id"]) for r in rows]
    with open_store(base["store"]) as s:
        pool = s.ids("train").tolist()
        test_id = int(s.ids("test")[0])
    not_queried = next(i for i in pool if i not in ids)

    def variant(name, edit, fields=None):
        rs = [dict(r, label="0") for r in read_rows(q)]
        edit(rs)
        path = project / "round-001" / "queries.csv" if name == "round" else tmp_path / name
        if name == "round":
            shutil.copy(q, tmp_path / "orig.csv")
        write_rows(path, rs, fields)
        return path

    # --- the round's own queries.csv (validated against round-001's queried ids)
    def in_round(edit, *expected):
        path = variant("round", edit)
        snapshot = tree_hash(project)  # the annotator's edit of queries.csv is part of the "before" state
        r = aift("teach", project, path)
        assert r.exit_code == 2, (r.output, r.stderr)
        line = one_line_error(r.stderr)
        for piece in expected:
            assert piece in line, (piece, line)
        assert tree_hash(project) == snapshot
        shutil.copy(tmp_path / "orig.csv", q)

    in_round(lambda rs: rs[2].update(id="999"), "queries.csv", "line 4", "999")
    in_round(lambda rs: rs[1].update(id=str(not_queried)), "line 3", str(not_queried), "not queried in round-001")
    in_round(lambda rs: rs[5].update(id=rs[0]["id"]), "line 7", rs_id(rows[0]), "twice", "line 2")
    in_round(lambda rs: rs[3].update(label="7"), "line 5", "'7'", "0=negative, 1=positive")
    in_round(lambda rs: rs[0].update(label="tumour"), "line 2", "'tumour'")
    in_round(lambda rs: rs[4].update(id="abc"), "line 6", "'abc'")
    assert not ledger(project)

    # --- a free-form CSV: ids must be in the pool
    free = tmp_path / "free.csv"
    write_rows(free, [{"id": pool[0], "label": "positive"}, {"id": test_id, "label": "negative"}])
    _bad_teach(project, free, "free.csv", "line 3", str(test_id), "pool")
    nolabel = tmp_path / "nolabel.csv"
    write_rows(nolabel, [{"id": pool[0], "lbl": "1"}])
    _bad_teach(project, nolabel, "nolabel.csv", "line 1", "'label'")
    _bad_teach(project, tmp_path / "missing.csv", "missing.csv")

    # --- empty labels only: a warning, nothing new, nothing changed, exit 0
    empty = tmp_path / "empty.csv"
    write_rows(empty, [{"id": pool[0], "label": ""}, {"id": pool[1], "label": " "}])
    before = tree_hash(project)
    r = aift("teach", project, empty)
    assert r.exit_code == 0, r.stderr
    assert "warning" in r.stderr and "2 row(s) with an empty label" in r.stderr and "nothing new" in r.output
    assert tree_hash(project) == before


def rs_id(row):
    return str(row["id"])


def test_query_and_init_errors(project, base):
    before = tree_hash(project)
    r = aift("query", project, "-n", 4)
    assert r.exit_code == 2 and "round-001 has not been answered" in one_line_error(r.stderr)
    assert "--force" in r.stderr
    r = aift("query", project, "-n", 999, "--force")
    line = one_line_error(r.stderr)
    assert r.exit_code == 2 and "999" in line and "35" in line
    r = aift("init", project, "--data", base["store"])
    assert r.exit_code == 2 and "already exists" in one_line_error(r.stderr)
    r = aift("init", project.parent / "other", "--data", base["store"], "--model", "nope")
    assert r.exit_code == 2 and "'nope'" in one_line_error(r.stderr)
    assert not (project.parent / "other").exists()
    assert tree_hash(project) == before


def test_exit_codes_in_subprocess(project, tmp_path):
    """The console entry point itself: exit 2 + one line on stderr, no TensorFlow needed to refuse."""
    before = tree_hash(project)
    bad = tmp_path / "bad.csv"
    rows = read_rows(project / "round-001" / "queries.csv")
    write_rows(bad, [{"id": rows[0]["id"], "label": "maybe"}])
    r = aift_subprocess("teach", project, bad)
    assert r.returncode == 2 and "bad.csv line 2" in one_line_error(r.stderr) and "'maybe'" in r.stderr
    r = aift_subprocess("query", project, "-n", 3)
    assert r.returncode == 2 and "not been answered" in one_line_error(r.stderr)
    r = aift_subprocess("status", tmp_path / "nowhere")
    assert r.returncode == 2 and "nowhere" in one_line_error(r.stderr)
    assert tree_hash(project) == before


# ------------------------------------------------------------------------------------------------
# a whole two-round project, with a crash between ledger and checkpoint
# ------------------------------------------------------------------------------------------------


def test_two_round_project_with_crash_recovery(project, base, tmp_path):
    store = base["store"]
    q1 = project / "round-001" / "queries.csv"
    rows1 = read_rows(q1)
    with open_store(store) as s:
        truth_all, pool = s.labels.copy(), s.ids("train").tolist()
    ids1 = [int(r["id"]) for r in rows1]
    # round 1 answered with one class only (whichever M0's queries hold; the other is "missing")
    keep = 0 if any(truth_all[i] == 0 for i in ids1) else 1
    missing = 1 - keep
    positives1 = {i for i in ids1 if truth_all[i] == missing}  # the skipped rows
    truth1 = answer(q1, store, skip=positives1)
    assert truth1 and set(truth1.values()) == {keep}
    n_keep = {CLASSES[keep]: len(truth1), CLASSES[missing]: 0}

    # 1. one class only: the labels are recorded (real work) but nothing is fine-tuned (the learner refuses a
    #    one-class set); the message says why and what to do next
    r = aift("teach", project, q1)
    assert r.exit_code == 0, r.stderr
    assert f"no fine-tuning until every class has a label: class {missing} ({CLASSES[missing]}) has none yet" \
        in r.output
    assert f"aift query {project}" in r.output and "--strategy random" in r.output
    led = ledger(project)
    assert {e["id"]: e["label"] for e in led} == truth1
    assert {e["round"] for e in led} == {None} and {e["query_round"] for e in led} == {1}
    assert all(e["v"] == 2 and e["annotator"] is None for e in led)
    assert checkpoint_rounds(project) == ["round-000"]
    out = aift("status", project).output
    assert f"labels: {len(truth1)} ({CLASSES[0]} {n_keep[CLASSES[0]]}, {CLASSES[1]} {n_keep[CLASSES[1]]})" in out
    assert f"{len(truth1)} label(s) recorded but not trained yet (no fine-tuning until every class" in out
    assert "teach rounds: 0" in out
    r = aift("query", project, "-n", 3, "--quiet")  # the round counts as answered; held labels are not re-queried
    assert r.exit_code == 0, r.stderr
    assert not {int(x["id"]) for x in read_rows(project / "round-002" / "queries.csv")} & set(truth1)
    shutil.rmtree(project / "round-002")

    # 2. the missing class arrives (a free-form CSV); teach is killed right after the ledger write (test hook)
    pos = sorted(positives1)[:2] or [next(i for i in pool if truth_all[i] == missing and i not in ids1)]
    extra = tmp_path / "positives.csv"
    write_rows(extra, [{"id": i, "label": CLASSES[missing]} for i in pos])
    r = aift_subprocess("teach", project, extra, "--quiet", env={"AIFT_TEST_CRASH_AFTER_LEDGER": "1"})
    assert r.returncode == 137, r.stderr
    led = ledger(project)
    assert [e["id"] for e in led if e["round"] == 1] == pos and len(led) == len(truth1) + len(pos)
    assert all(e["source"] == "round-001/queries.csv" and e["time"] and e["line"] >= 2 for e in led[:len(truth1)])
    assert checkpoint_rounds(project) == ["round-000"]  # the model never saw them
    truth1 = {**truth1, **{i: missing for i in pos}}

    # 3. the next command recovers: round 1 is fine-tuned on EVERY label so far (the held negatives too)
    r = aift("teach", project, "round-001/queries.csv")  # relative to the project
    assert r.exit_code == 0, r.stderr
    assert "recovering: round 1" in r.output and "nothing new" in r.output
    if positives1:
        assert f"{len(positives1)} row(s) with an empty label" in r.stderr
    assert checkpoint_rounds(project) == ["round-000", "round-001"]
    st = json.loads((project / "checkpoints" / "round-001" / "state.json").read_text())
    assert st["round"] == 1
    assert dict(zip(st["labeled_ids"], st["labeled_labels"])) == truth1
    assert st["history"][0]["train_candidates"] == len(truth1) and st["history"][0]["finetune"]["epochs"] == 1
    assert ledger(project) == led  # nothing appended twice

    import keras

    m0 = keras.models.load_model(project / "checkpoints" / "round-000" / "model.keras", compile=False)
    m1 = keras.models.load_model(project / "checkpoints" / "round-001" / "model.keras", compile=False)
    assert any(not np.allclose(a, b) for a, b in zip(m0.get_weights(), m1.get_weights()))

    # 3. relabeling without --relabel is refused, project unchanged
    some = next(iter(truth1))
    flip = tmp_path / "flip.csv"
    write_rows(flip, [{"id": some, "label": 1 - truth1[some]}])
    _bad_teach(project, flip, "flip.csv", "line 2", str(some), "--relabel")

    # 4. round 2 (the trial round-002 of step 1 was removed)
    r = aift("query", project, "-n", 8, "--quiet")
    assert r.exit_code == 0, r.stderr
    q2 = project / "round-002" / "queries.csv"
    ids2 = [int(x["id"]) for x in read_rows(q2)]
    assert not set(ids2) & set(truth1)
    truth2 = answer(q2, store)
    r = aift("teach", project, q2)
    assert r.exit_code == 0, r.stderr
    assert "teach round 2: 8 new label(s)" in r.output
    assert checkpoint_rounds(project) == ["round-000", "round-001", "round-002"]
    led = ledger(project)
    assert len(led) == len(truth1) + len(truth2)
    assert {e["id"]: e["label"] for e in led if e["round"] == 2} == truth2
    r = aift("teach", project, q2)
    assert r.exit_code == 0 and "nothing new" in r.output and "8 already labeled" in r.output

    # 5. status
    r = aift("status", project)
    assert r.exit_code == 0, r.stderr
    n_pos = sum(truth1.values()) + sum(truth2.values())
    n_lab = len(truth1) + len(truth2)
    assert f"labels: {n_lab} (negative {n_lab - n_pos}, positive {n_pos})" in r.output
    assert f"pool left: {35 - n_lab} of 35" in r.output
    assert "teach rounds: 2" in r.output and "loss per epoch [" in r.output
    assert "validation AUC: " in r.output

    # 6. export
    out = tmp_path / "export"
    r = aift("export", project, "--out", out, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert (out / "saved_model").is_dir() and (out / "model.keras").is_file()
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["round"] == 2 and prov["labeled"] == n_lab and prov["strategy"] == "aift"
    assert prov["learning"] == "ACFT-LQ" and prov["seed"] == 0
    with open_store(store) as s:
        assert prov["data_sha256"] == s.sha256
        x = s.read_float(np.array(ids2[:3]))
    from aift_tf.export import load_exported

    em = load_exported(out)
    p = em(x)["candidate_probability"]
    assert p.shape == (3, 2) and np.allclose(p.sum(axis=1), 1, atol=1e-4)
    r = aift("export", project, "--out", out)
    assert r.exit_code == 2 and "already exists" in one_line_error(r.stderr)


@pytest.mark.slow
def test_relabel_and_subprocess_round(project, base, tmp_path):
    """Whole round through the console entry point; then --relabel changes a label and re-trains it."""
    first = tmp_path / "first.csv"  # round-001 answered + one candidate of any class it lacks: teach fine-tunes
    truth1 = first_labels(project, base["store"], first)
    r = aift_subprocess("teach", project, first)
    assert r.returncode == 0, r.stderr
    assert "teach round 1" in r.stdout
    some = next(iter(truth1))
    flip = tmp_path / "flip.csv"
    write_rows(flip, [{"id": some, "label": CLASSES[1 - truth1[some]]}])
    r = aift_subprocess("teach", project, flip, "--relabel")
    assert r.returncode == 0, r.stderr
    assert "1 relabeled" in r.stdout
    last = ledger(project)[-1]
    assert last["id"] == some and last["relabel"] and last["round"] == 2 and last["source"] == str(flip.resolve())
    st = json.loads((project / "checkpoints" / "round-002" / "state.json").read_text())
    assert dict(zip(st["labeled_ids"], st["labeled_labels"]))[some] == 1 - truth1[some]
    assert len(st["labeled_ids"]) == len(truth1)
    r = aift_subprocess("query", project, "-n", 5, "--strategy", "random", "--omega", "1")
    assert r.returncode == 0, r.stderr
    assert (project / "round-002" / "gallery.html").is_file()
    r = aift_subprocess("status", project)
    assert r.returncode == 0 and "round-002: 5 queried, 0 labeled (unanswered)" in r.stdout
