"""Issue 20: `aift` probed like a hostile user: every defect found is one line, exit 2, nothing half-written,
no label lost.

- `export --force` replaces only an earlier export (recognised by its provenance.json and contents); the project,
  anything in it, the store, a user's folder, a regular file or a symbolic link are refused and left as they were;
  a full disk leaves the old export (or nothing).
- Tracebacks of `init` (seed out of numpy's range, a path under a regular file) and `teach` (a label of 400 digits).
- Absurd settings (epochs, batch size) refused by `init` and in config.json (no endless fine-tune, also after a
  kill between the ledger and the checkpoint).
- Malformed label CSVs (unclosed quote, ragged row) refused whole; a labels file of an annotator the round was
  never dealt to refused; a `queries-filled.csv` does not make "filled" an annotator.
- A tampered query.json is refused by query / teach / export / adjudicate.
- A project that cannot be locked is never written (status still answers); a garbage state.json or a checkpoint
  disagreeing with the ledger leaves status answering, and `aift recover` fixes both.
- Messages: the damaged-checkpoint cause is kept whole and `recover` is not recommended where it cannot help; a
  missing checkpoints/ points to `aift recover`; hints quote paths with spaces; range errors read `error: ...`.
- A 28×28×1 store without weights writes the checkpoint of every teach.

Fixtures are shared with tests/test_aift_cli.py (tiny store, small_cnn, 1 epoch).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from aift_tf.export import is_export
from test_aift_cli import (ROOT, aift, base, first_labels, ledger, one_line_error, project,  # noqa: F401
                           read_rows, tree_hash, write_rows)
from test_project_safety import assert_survived, snapshot, status_ok


def refused(r, *words):
    """The command exited 2 with one `error:` line holding every one of ``words``; returns the line."""
    assert r.exit_code == 2, (r.output, r.stderr)
    line = one_line_error(r.stderr)
    for w in words:
        assert w in line, (w, line)
    return line


def _edit_json(path, edit):
    d = json.loads(Path(path).read_text())
    edit(d)
    Path(path).write_text(json.dumps(d))


# ------------------------------------------------------------------------------------------------
# export --force
# ------------------------------------------------------------------------------------------------


def test_export_force_replaces_only_an_earlier_export(project, base, tmp_path):
    out = tmp_path / "model"
    r = aift("export", project, "--out", out, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert is_export(out)
    refused(aift("export", project, "--out", out, "--quiet"), "earlier export", "--force")
    first = json.loads((out / "provenance.json").read_text())["created"]
    r = aift("export", project, "--out", out, "--force", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert is_export(out) and json.loads((out / "provenance.json").read_text())["created"] >= first

    # anything else is refused, with or without --force, and left exactly as it was
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("years of work")
    extra = tmp_path / "export-plus"
    shutil.copytree(out, extra)
    (extra / "notes.txt").write_text("mine")
    regular = tmp_path / "file.txt"
    regular.write_text("keep")
    link = tmp_path / "link"
    link.symlink_to(out, target_is_directory=True)
    project_before = snapshot(project)
    cases = [(mine, "not an export"), (extra, "not an export"), (regular, "is a file"), (link, "symbolic link"),
             (project, "inside the project"), (project / "round-001", "inside the project"),
             (project / "checkpoints", "inside the project"), (project / "new-export", "inside the project"),
             (base["store"], "store"), (tmp_path, "holds the project")]
    for target, words in cases:
        before = snapshot(target) if Path(target).is_dir() and not Path(target).is_symlink() else None
        raw = Path(target).read_bytes() if Path(target).is_file() else None
        for force in ((), ("--force",)):
            refused(aift("export", project, "--out", target, *force, "--quiet"), words)
        if before is not None:
            assert_survived(before, target)
        if raw is not None:
            assert Path(target).read_bytes() == raw
    assert link.is_symlink() and is_export(out)
    assert_survived(project_before, project)
    refused(aift("export", project, "--out", regular / "x", "--quiet"), "is not a folder")
    status_ok(project)


def _mount_tmpfs(path, size):
    if os.geteuid() != 0:
        return False
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.mark.parametrize("free_mb", [pytest.param(0.05, marks=pytest.mark.slow), 1,
                                     pytest.param(4, marks=pytest.mark.slow)])
def test_export_onto_a_full_disk_keeps_the_old_export(project, tmp_path, free_mb):
    """A real tmpfs filling up while TensorFlow writes the SavedModel (it raised ResourceExhaustedError)."""
    mnt = tmp_path / "disk"
    if not _mount_tmpfs(mnt, "24m"):
        pytest.skip("mounting a tmpfs needs root")
    try:
        out, new = mnt / "model", mnt / "model2"
        r = aift("export", project, "--out", out, "--quiet")
        assert r.exit_code == 0, r.stderr
        old = tree_hash(out)
        st = os.statvfs(mnt)
        (mnt / "balloon").write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - int(free_mb * 2 ** 20)))
        for target, force in ((out, ("--force",)), (new, ())):
            refused(aift("export", project, "--out", target, *force, "--quiet"), "no space left on the device",
                    "nothing was changed")
        assert tree_hash(out) == old and is_export(out) and not new.exists()
        assert sorted(p.name for p in mnt.iterdir()) == ["balloon", "model"]  # no temporaries left
        (mnt / "balloon").unlink()
        r = aift("export", project, "--out", out, "--force", "--quiet")
        assert r.exit_code == 0, r.stderr
    finally:
        import gc

        gc.collect()
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# ------------------------------------------------------------------------------------------------
# init: numbers and paths
# ------------------------------------------------------------------------------------------------


def test_init_refuses_out_of_range_numbers_and_a_path_under_a_file(base, tmp_path):
    store = base["store"]
    huge = "99999999999999999999"
    for opt, value in (("--seed", "-5"), ("--seed", huge), ("--seed", str(2 ** 32)), ("--epochs", huge),
                       ("--epochs", "10001"), ("--epochs", "0"), ("--batch-size", huge), ("--lr", "11")):
        line = refused(aift("init", tmp_path / "p", "--data", store, opt, value, "--quiet"), opt, value)
        assert "Error: Invalid value" not in line
    assert not (tmp_path / "p").exists()
    regular = tmp_path / "file.txt"
    regular.write_text("x")
    refused(aift("init", regular / "p", "--data", store, "--quiet"), "is not a folder")
    for inside in ("round-009", "checkpoints/round-009", "sub"):
        refused(aift("init", base["project"] / inside, "--data", store, "--quiet"), "inside the project")
        assert not (base["project"] / inside).exists()
    assert regular.read_text() == "x"
    r = aift("init", "--help")
    assert "1..10000" in r.output and "0..4294967295" in r.output
    # the library checks the same bounds
    from aift_tf.errors import AiftError
    from aift_tf.project import init_project

    for kw in ({"epochs": 10 ** 20}, {"seed": -1}, {"batch_size": 10 ** 9}, {"learning_rate": 1e30}):
        with pytest.raises(AiftError):
            init_project(tmp_path / "q", store, **kw)
    assert not (tmp_path / "q").exists()


def test_absurd_epochs_in_config_never_start_a_fine_tune(project, base, tmp_path):
    """A config.json holding an endless fine-tune is refused, also where a killed teach left a round to redo."""
    first = tmp_path / "first.csv"
    first_labels(project, base["store"], first)
    code = "import sys; from aift_tf.cli import main; main(sys.argv[1:])"
    env = dict(os.environ, AIFT_TEST_CRASH_AFTER_LEDGER="1",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", code, "teach", str(project), str(first), "--quiet"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 137, r.stderr  # killed between the ledger and the checkpoint
    assert {e["round"] for e in ledger(project)} == {1}
    _edit_json(project / "config.json", lambda d: d["finetune"].update(epochs=99999999999999999999))
    before = snapshot(project)
    for cmd in (("query", project, "-n", 2, "--force"), ("teach", project, first), ("recover", project),
                ("export", project, "--out", tmp_path / "m"), ("status", project)):
        refused(aift(*cmd, "--quiet"), "finetune.epochs", "out of range (1..10000)")
    assert_survived(before, project)
    _edit_json(project / "config.json", lambda d: d["finetune"].update(epochs=1))
    # the learner runs with the checkpoint's own settings: an absurd value there makes it a damaged checkpoint
    state = project / "checkpoints" / "round-000" / "state.json"
    _edit_json(state, lambda d: (d["finetune"].update(epochs=10 ** 20), d["config"]["finetune"].update(epochs=10 ** 20)))
    refused(aift("query", project, "-n", 2, "--force", "--quiet"), "state.json", "finetune.epochs", "aift recover")
    assert "aift recover" in status_ok(project)
    r = aift("recover", project, "--quiet")  # M0 rebuilt from config.json, round 1 re-trained from the ledger
    assert r.exit_code == 0, r.stderr
    assert "teach rounds: 1" in status_ok(project)


# ------------------------------------------------------------------------------------------------
# teach: labels and label files
# ------------------------------------------------------------------------------------------------


def test_teach_refuses_huge_labels_and_malformed_files_whole(project, tmp_path):
    ids = [int(r["id"]) for r in read_rows(project / "round-001" / "queries.csv")]
    before = snapshot(project)
    files = {
        "digits.csv": ("id,label\n%d,1%s\n" % (ids[0], "0" * 400), "is not a class"),
        "exp.csv": ("id,label\n%d,1e400\n" % ids[0], "is not a class"),
        "longid.csv": ("id,label\n%s,1\n" % ("9" * 5000), "not an integer candidate id"),
        "underscore.csv": ("id,label\n1_0,1\n", "not an integer candidate id"),
        "arabic.csv": ("id,label\n\u0663,1\n", "not an integer candidate id"),
        "arabic-label.csv": ("id,label\n%d,\u0661\n" % ids[0], "is not a class"),
        "quote.csv": ('id,label,note\n%d,1,"unclosed\n%d,0,x\n' % (ids[0], ids[1]), "malformed CSV"),
        "stray.csv": ('id,label\n%d,"1"x\n' % ids[0], "malformed CSV"),
        "ragged-more.csv": ("id,label\n%d,1\n%d,0,extra,fields\n" % (ids[0], ids[1]), "line 3", "ragged"),
        "ragged-less.csv": ("id,label,note\n%d,1,ok\n%d\n" % (ids[0], ids[1]), "line 3", "ragged"),
    }
    for name, (text, *words) in files.items():
        f = tmp_path / name
        f.write_text(text)
        line = refused(aift("teach", project, f, "--quiet"), *words)
        assert "nothing was changed" in line, line
    assert_survived(before, project)


@pytest.fixture
def spaced(base, tmp_path):
    """A copy of the base project in a folder whose name holds a space and a quote."""
    dst = tmp_path / "my proj's"
    shutil.copytree(base["project"], dst)
    return dst


def test_labels_of_an_annotator_the_round_was_not_dealt_to(spaced, base, tmp_path):
    import shlex

    project = spaced
    r = aift("query", project, "-n", 6, "--annotators", "alice,bob", "--overlap", "0.34", "--force")
    assert r.exit_code == 0, r.stderr
    assert f"aift teach {shlex.quote(str(project))} CSV" in r.output  # pastes into a shell as it is
    rnd = project / "round-002"
    info = json.loads((rnd / "query.json").read_text())
    for name in ("alice", "bob"):
        rows = read_rows(rnd / f"queries-{name}.csv")
        for row in rows:
            row["label"] = "0"
        write_rows(rnd / f"queries-{name}.csv", rows)
    before = snapshot(project)
    shutil.copy(rnd / "queries-alice.csv", rnd / "queries-mallory.csv")
    refused(aift("teach", project, rnd / "queries-mallory.csv", "--quiet"), "dealt to alice, bob", "mallory")
    dl = tmp_path / "round-002-mallory-labels.csv"
    shutil.copy(rnd / "queries-alice.csv", dl)
    refused(aift("teach", project, dl, "--quiet"), "mallory")
    # an annotator column naming someone else, or alice's file claiming bob's candidates
    rows = read_rows(rnd / "queries-alice.csv")
    col = tmp_path / "round-002-alice-labels.csv"
    write_rows(col, [dict(r, annotator="mallory") for r in rows])
    refused(aift("teach", project, col, "--quiet"), "'mallory' was not dealt round-002")
    only_bob = [i for i in info["annotators"]["bob"] if i not in info["annotators"]["alice"]]
    write_rows(col, [{"id": only_bob[0], "label": 0}])
    refused(aift("teach", project, col, "--quiet"), f"id {only_bob[0]} was not dealt to alice")
    (rnd / "queries-mallory.csv").unlink()
    assert_survived(before, project)
    # a copy saved under another name is fine once --annotator says whose labels they are
    shutil.copy(rnd / "queries-alice.csv", rnd / "queries-filled.csv")
    r = aift("teach", project, rnd / "queries-filled.csv", "--annotator", "alice", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert {e["annotator"] for e in ledger(project)} == {"alice"}
    r = aift("teach", project, rnd / "queries-alice.csv", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert "nothing new" in r.output or r.output == ""


def test_a_filled_copy_does_not_become_an_annotator(project):
    rnd = project / "round-001"
    rows = read_rows(rnd / "queries.csv")
    for row in rows:
        row["label"] = "0"
    write_rows(rnd / "queries-filled.csv", rows)
    r = aift("teach", project, rnd / "queries-filled.csv", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert {e["annotator"] for e in ledger(project)} == {None}
    who = [ln for ln in status_ok(project).splitlines() if ln.startswith("annotators:")]
    assert who and not any("filled" in ln for ln in who), who


def test_tampered_query_json_is_refused_by_every_writing_command(project, tmp_path):
    f = project / "round-001" / "query.json"
    csv_file = tmp_path / "labels.csv"
    ids = json.loads(f.read_text())["ids"]
    write_rows(csv_file, [{"id": ids[0], "label": 0}])
    for edit, words in ((lambda d: d.update(ids=[float(i) for i in d["ids"]]), "is not an integer"),
                        (lambda d: d.update(ids=[str(i) for i in d["ids"]]), "is not an integer"),
                        (lambda d: d.update(ids=d["ids"][:-1] + [10 ** 6]), "out of range"),
                        (lambda d: d.update(shared=[True]), '"shared"')):
        _edit_json(f, lambda d: d.update(ids=ids, shared=[]))
        _edit_json(f, edit)
        before = snapshot(project)
        for cmd in (("query", project, "-n", 2, "--force"), ("teach", project, csv_file),
                    ("export", project, "--out", tmp_path / "m"), ("adjudicate", project)):
            refused(aift(*cmd, "--quiet"), "query.json", words)
        assert_survived(before, project)
        assert not (tmp_path / "m").exists()


# ------------------------------------------------------------------------------------------------
# locking and damaged checkpoints
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lock", ["folder", "symlink"])
def test_a_project_that_cannot_be_locked_is_never_written(project, tmp_path, lock):
    f = project / ".aift.lock"
    f.unlink()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    if lock == "folder":
        f.mkdir()
    else:
        f.symlink_to(victim)
    csv_file = tmp_path / "labels.csv"
    write_rows(csv_file, [{"id": int(read_rows(project / "round-001" / "queries.csv")[0]["id"]), "label": 0}])
    before = snapshot(project)
    for cmd in (("query", project, "-n", 2, "--force"), ("teach", project, csv_file), ("adjudicate", project),
                ("export", project, "--out", tmp_path / "m"), ("recover", project)):
        refused(aift(*cmd, "--quiet"), "cannot lock the project", ".aift.lock")
    assert_survived(before, project)
    assert victim.read_text() == "keep" and not (tmp_path / "m").exists()
    assert "teach rounds: 0" in status_ok(project)  # a read-only command still answers
    f.rmdir() if lock == "folder" else f.unlink()
    assert aift("query", project, "-n", 2, "--force", "--quiet").exit_code == 0


def test_garbage_state_and_a_disagreeing_checkpoint_status_answers_recover_fixes(project, base, tmp_path):
    first = tmp_path / "first.csv"
    truth = first_labels(project, base["store"], first)
    r = aift("teach", project, first, "--quiet")
    assert r.exit_code == 0, r.stderr
    state = project / "checkpoints" / "round-001" / "state.json"
    state.write_text("garbage")
    out = status_ok(project)
    assert "damaged checkpoint" in out and "aift recover" in out and "teach rounds: ?" in out
    refused(aift("query", project, "-n", 2, "--force", "--quiet"), "damaged checkpoint", "aift recover")
    r = aift("recover", project, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert "teach rounds: 1" in status_ok(project)

    # what two unlocked teaches at once left: ledger entries of round 1 the checkpoint was not trained on
    with open(project / "ledger.jsonl") as fh:
        last = json.loads(fh.read().splitlines()[-1])
    pool = sorted(set(range(56)) - set(truth))
    from aift_tf.store import open_store

    with open_store(base["store"]) as s:
        free = next(i for i in pool if i in set(s.ids("train").tolist()))
    with open(project / "ledger.jsonl", "a") as fh:
        fh.write(json.dumps(dict(last, id=free, label=0, line=99)) + "\n")
    out = status_ok(project)
    assert "disagree" in out and "aift recover" in out
    refused(aift("query", project, "-n", 2, "--force", "--quiet"), "disagree", "aift recover")
    r = aift("recover", project, "--quiet")
    assert r.exit_code == 0, r.stderr
    out = status_ok(project)
    assert "teach rounds: 1" in out and f"labels: {len(truth) + 1}" in out and "disagree" not in out


def test_damaged_checkpoint_messages(project):
    from aift_tf.project import DamagedCheckpoint, Project, cause_line

    keras_like = ("TypeError: <class 'Functional'> could not be deserialized properly. Please ensure that "
                  "components that are Python object instances (layers, models, etc.) returned by `get_config()` "
                  "are explicitly deserialized in the model's `from_config()` method.\n\nconfig={'a': 1}\n\n"
                  "Exception encountered: Could not locate class 'Mystery'. Make sure custom classes are "
                  "decorated.")
    assert cause_line(keras_like).startswith(keras_like.splitlines()[0])  # the first line whole
    assert "Exception encountered: Could not locate class 'Mystery'" in cause_line(keras_like)
    p = Project(project)
    cp = project / "checkpoints" / "round-000"
    e = p.damaged_checkpoint(cp, keras_like)
    assert not isinstance(e, DamagedCheckpoint) and "would not help" in str(e) and "\n" not in str(e)
    e = p.damaged_checkpoint(cp, "OSError: [Errno 13] Permission denied: 'model.keras'")
    assert "permission" in str(e) and "would not help" in str(e)
    long = "ValueError: " + "x" * 400 + " end of the first line\nsecond line"
    e = p.damaged_checkpoint(cp, long)
    assert isinstance(e, DamagedCheckpoint) and "end of the first line" in str(e) and "second line" not in str(e)
    assert "aift recover" in str(e)


def test_missing_checkpoints_points_to_recover(project):
    shutil.rmtree(project / "checkpoints")
    line = refused(aift("query", project, "-n", 2, "--force", "--quiet"), "aift recover")
    assert "aift init" not in line
    assert "aift recover" in status_ok(project)
    r = aift("recover", project, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert "teach rounds: 0" in status_ok(project)


# ------------------------------------------------------------------------------------------------
# messages
# ------------------------------------------------------------------------------------------------


class _Cli:
    def __init__(self, main, name):
        self._main, self.name = main, name

    def main(self, args=None, prog_name=None, **extra):
        self._main(args)


@pytest.mark.parametrize("which, args", [
    ("aift", ["query", "x", "-n", "0"]), ("aift", ["init", "x", "--data", "y", "--epochs", "0"]),
    ("aift", ["score", "y.h5", "--model", "m.keras", "--out", "o.h5", "--batch-size", "0"]),
    ("aift-sim", ["run", "--seeds", "0"]), ("aift-data", ["import-npz", "x.npz", "--out", "y.h5", "--patches", "0"]),
])
def test_range_errors_read_in_our_form(which, args):
    if which == "aift":
        from aift_tf.cli import main
    elif which == "aift-sim":
        from simulate.sim_cli import main
    else:
        from simulate.data_cli import main
    r = CliRunner().invoke(_Cli(main, which), args)
    assert r.exit_code == 2
    line = one_line_error(r.stderr)
    assert "Invalid value" not in r.output + r.stderr and "must be an integer >= 1" in line and "got 0" in line


def test_empty_annotator_names_and_absurd_strategies_are_refused(project):
    before = snapshot(project)
    for value in ("a,,b", "", " , ", "alice,"):
        refused(aift("query", project, "-n", 2, "--force", "--annotators", value, "--quiet"), "empty name")
    for strategy in ("entropy+diversity@1e400", "entropy@1/1e-400"):  # an OverflowError traceback before
        refused(aift("query", project, "-n", 2, "--force", "--strategy", strategy, "--quiet"), strategy)
    assert_survived(before, project)


# ------------------------------------------------------------------------------------------------
# a grayscale 28×28 store without weights
# ------------------------------------------------------------------------------------------------


def test_grayscale_store_without_weights_writes_every_teach(tmp_path):
    from aift_tf.store import open_store
    from simulate.data_cli import main as data_main

    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 40), ("val", 12), ("test", 8)):
        lab = np.arange(n) % 2
        img = rng.normal(90, 20, size=(n, 28, 28))
        img[lab == 1, 10:18, 10:18] += 120
        arrays[f"{split}_images"] = img.clip(0, 255).astype(np.uint8)
        arrays[f"{split}_labels"] = lab.reshape(-1, 1).astype(np.uint8)
    np.savez(tmp_path / "gray.npz", **arrays)
    store = tmp_path / "gray.h5"
    r = CliRunner().invoke(_Cli(data_main, "aift-data"), ["import-npz", str(tmp_path / "gray.npz"), "--out",
                                                          str(store), "--patches", "2", "--quiet"])
    assert r.exit_code == 0, r.output
    project = tmp_path / "gray"
    r = aift("init", project, "--data", store, "--weights", "none", "--epochs", 1, "--batch-size", 16, "--quiet")
    assert r.exit_code == 0, r.stderr
    with open_store(store) as s:
        truth, pool = s.labels.copy(), s.ids("train").tolist()
    write_rows(tmp_path / "first.csv", [{"id": i, "label": int(truth[i])} for i in pool[:4]])
    assert aift("teach", project, tmp_path / "first.csv", "--quiet").exit_code == 0
    r = aift("query", project, "-n", 4, "--quiet")
    assert r.exit_code == 0, r.stderr
    rows = read_rows(project / "round-001" / "queries.csv")
    for row in rows:
        row["label"] = str(truth[int(row["id"])])
    write_rows(project / "round-001" / "queries.csv", rows)
    r = aift("teach", project, project / "round-001" / "queries.csv", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert (project / "checkpoints" / "round-002" / "state.json").is_file()
    assert "teach rounds: 2" in status_ok(project)
