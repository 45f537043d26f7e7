"""Issue 14: `aift` never loses an annotator's work, and a failed command leaves the project as it was.

1. `query` never replaces a round-NNN folder (one without query.json, or the user's own).
2. Two concurrent `init` of one path: exactly one wins, the other exits 2, the winner's project is intact.
3. `teach` loads and checks everything (checkpoint, config vs store, model classes) before the ledger is
   touched; a damaged checkpoint is named with `aift recover PROJECT`, which then recovers.
4. Values read back are validated (ledger, query.json), status escapes terminal controls, files follow the
   umask, folders are fsynced after a rename.

For 1-3 the tests compare every file byte for byte before/after and run `aift status` afterwards.
Fixtures and helpers are shared with tests/test_aift_cli.py (tiny store, small_cnn, 1 epoch).
"""

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aift_tf.files import atomic_dir, atomic_path, write_text_atomic
from aift_tf.errors import AiftError
from aift_tf.store import open_store, write_store
from conftest import make_separable_arrays
from test_aift_cli import (CLASSES, ROOT, aift, answer, base, first_labels, ledger, one_line_error,  # noqa: F401
                           project, read_rows, write_rows)


def snapshot(folder):
    """{relative path: bytes (files) or None (folders)} of everything under ``folder``."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


def assert_survived(before, folder, allow_new=()):
    """Every file/folder of ``before`` is still there with the same bytes; nothing else except ``allow_new``."""
    after = snapshot(folder)
    for k, v in before.items():
        assert k in after, f"{k} was deleted"
        assert after[k] == v, f"{k} was changed"
    extra = {k for k in after if k not in before and not any(k == a or k.startswith(a + "/") for a in allow_new)}
    assert not extra, extra


def status_ok(project):
    r = aift("status", project)
    assert r.exit_code == 0, (r.output, r.stderr)
    return r.output


def pool_ids(store_path):
    with open_store(store_path) as s:
        return [int(i) for i in s.ids("train")]


# ------------------------------------------------------------------------------------------------
# 1. query never replaces a round folder
# ------------------------------------------------------------------------------------------------


def test_query_never_replaces_a_round_folder(project, base):
    q1 = project / "round-001" / "queries.csv"
    truth = answer(q1, base["store"])  # the annotator's work
    (project / "round-001" / "query.json").unlink()  # deleted (or never written)
    (project / "round-001" / "my notes.txt").write_text("PE in 3 of them, ask Dr X about id 4\n")
    (project / "round-002").mkdir()  # a folder of the user's own with a matching name
    (project / "round-002" / "draft.csv").write_text("id,label\n1,0\n")
    before = snapshot(project)

    r = aift("query", project, "-n", 4, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert_survived(before, project, allow_new=("round-003",))
    assert (project / "round-003" / "query.json").is_file()
    assert len(read_rows(project / "round-003" / "queries.csv")) == 4
    out = status_ok(project)
    assert "round-001: no query.json" in out and "round-002: no query.json" in out
    assert "round-003: 4 queried" in out
    assert_survived(before, project, allow_new=("round-003",))

    # the annotator's filled CSV is still usable: without query.json its ids are checked against the pool
    r = aift("teach", project, q1, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert "query.json is missing" in r.stderr
    assert {e["id"]: e["label"] for e in ledger(project)} == truth


def test_atomic_dir_without_replace_refuses_a_folder_that_appeared_meanwhile(tmp_path):
    target = tmp_path / "round-001"
    with pytest.raises(AiftError, match="already exists"):
        with atomic_dir(target, replace=False) as tmp:
            (tmp / "queries.csv").write_text("new\n")
            target.mkdir()  # a concurrent writer (or the user) creates it first
            (target / "queries.csv").write_text("the annotator's labels\n")
    assert (target / "queries.csv").read_text() == "the annotator's labels\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["round-001"]  # no temporary left behind
    # an EMPTY folder is not replaced either (a plain rename(2) would replace it silently)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AiftError, match="already exists"):
        with atomic_dir(empty, replace=False) as tmp:
            (tmp / "x").write_text("x")
    assert list(empty.iterdir()) == []
    with atomic_dir(tmp_path / "fresh", replace=False) as tmp:
        (tmp / "x").write_text("x")
    assert (tmp_path / "fresh" / "x").read_text() == "x"


def test_portable_no_replace_rename(tmp_path):
    """The fallback where renameat2(RENAME_NOREPLACE) is unavailable refuses to replace anything, too."""
    from aift_tf.files import rename_into_claim

    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("new")
    for existing in ("dir", "empty", "file"):
        dst = tmp_path / existing
        if existing == "file":
            dst.write_text("mine")
        else:
            dst.mkdir()
            if existing == "dir":
                (dst / "a").write_text("mine")
        with pytest.raises(FileExistsError):
            rename_into_claim(src, dst)
    assert (tmp_path / "dir" / "a").read_text() == "mine" and (tmp_path / "file").read_text() == "mine"
    assert not any((tmp_path / "empty").iterdir())
    rename_into_claim(src, tmp_path / "new")
    assert (tmp_path / "new" / "a").read_text() == "new" and not src.exists()


# ------------------------------------------------------------------------------------------------
# 2. concurrent init
# ------------------------------------------------------------------------------------------------


def test_concurrent_init_of_one_path_only_one_wins(base, tmp_path):
    target = tmp_path / "proj"
    code = "import sys; from aift_tf.cli import main; main(sys.argv[1:])"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = {seed: subprocess.Popen([sys.executable, "-c", code, "init", str(target), "--data", str(base["store"]),
                                     "--epochs", "1", "--seed", str(seed), "--quiet"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for seed in (1, 2)}
    first, snap = None, None
    deadline = time.time() + 300
    while first is None and time.time() < deadline:
        for seed, p in procs.items():
            if p.poll() is not None:
                first = seed
                break
        time.sleep(0.05)
    assert first is not None
    if procs[first].returncode == 0:
        snap = snapshot(target)  # the winner's project, right after it was created
    results = {seed: (p.wait(timeout=300), *p.communicate()) for seed, p in procs.items()}
    codes = sorted(rc for rc, _, _ in results.values())
    assert codes == [0, 2], results
    winner = next(seed for seed, (rc, _, _) in results.items() if rc == 0)
    loser = 3 - winner
    line = one_line_error(results[loser][2])
    assert str(target) in line and "already exists" in line
    assert json.loads((target / "config.json").read_text())["seed"] == winner
    if snap is not None:
        assert_survived(snap, target)
        assert snapshot(target).keys() == snap.keys()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proj"]  # the loser's temporary folder is gone
    assert (target / "ledger.jsonl").read_bytes() == b""
    status_ok(target)


# ------------------------------------------------------------------------------------------------
# 3. teach checks everything before the ledger
# ------------------------------------------------------------------------------------------------


def test_teach_with_a_damaged_checkpoint_leaves_the_ledger_and_recover_fixes_it(project, base, tmp_path):
    first = tmp_path / "first.csv"
    truth1 = first_labels(project, base["store"], first)
    r = aift("teach", project, first, "--quiet")
    assert r.exit_code == 0, r.stderr
    queried = set(truth1)
    more = [i for i in pool_ids(base["store"]) if i not in queried][:3]
    extra = tmp_path / "more.csv"
    write_rows(extra, [{"id": i, "label": "negative"} for i in more])
    model = project / "checkpoints" / "round-001" / "model.keras"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])  # truncated (disk full, bad copy, ...)
    before = snapshot(project)
    ledger_bytes = (project / "ledger.jsonl").read_bytes()

    r = aift("teach", project, extra)
    assert r.exit_code == 2, (r.output, r.stderr)
    assert_survived(before, project)  # the ledger and every file, byte for byte
    assert snapshot(project).keys() == before.keys()
    line = one_line_error(r.stderr)
    assert str(project / "checkpoints" / "round-001") in line and "damaged checkpoint" in line
    assert f"aift recover {project}" in line and "go back to checkpoint round-000" in line
    assert "model.keras is truncated" in line and "File not found" not in line
    out = status_ok(project)
    assert "teach rounds: 1" in out
    assert_survived(before, project)

    # the command named in the error recovers from the previous checkpoint; the ledger is untouched
    r = aift("recover", project)
    assert r.exit_code == 0, r.stderr
    assert "recovering: round 1" in r.output and "1 damaged checkpoint(s) set aside" in r.output
    assert (project / "ledger.jsonl").read_bytes() == ledger_bytes
    assert (project / "checkpoints" / "round-001.damaged" / "model.keras").read_bytes() == before[
        "checkpoints/round-001/model.keras"]
    st = json.loads((project / "checkpoints" / "round-001" / "state.json").read_text())
    assert dict(zip(st["labeled_ids"], st["labeled_labels"])) == truth1
    r = aift("teach", project, extra, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert (project / "ledger.jsonl").read_bytes().startswith(ledger_bytes)
    assert [e["id"] for e in ledger(project) if e["round"] == 2] == more
    assert "teach rounds: 2" in status_ok(project)


def test_recover_rebuilds_a_damaged_m0(project, base, tmp_path):
    m0 = project / "checkpoints" / "round-000" / "model.keras"
    m0.write_bytes(b"PK\x03\x04 not a model")
    first_labels(project, base["store"], tmp_path / "first.csv")
    before = snapshot(project)
    r = aift("teach", project, tmp_path / "first.csv")
    assert r.exit_code == 2
    assert_survived(before, project)
    line = one_line_error(r.stderr)
    assert "round-000" in line and "aift recover" in line and "rebuild M0 from config.json" in line
    r = aift("recover", project)
    assert r.exit_code == 0, r.stderr
    assert "M0 rebuilt" in r.output
    assert (project / "checkpoints" / "round-000.damaged" / "model.keras").read_bytes() == b"PK\x03\x04 not a model"
    r = aift("recover", project)
    assert r.exit_code == 0 and "nothing to recover" in r.output


def test_teach_refuses_edited_class_names_before_the_ledger(project, base):
    cfg = project / "config.json"
    original = cfg.read_bytes()
    c = json.loads(original)
    c["class_names"] = CLASSES + ["other"]
    cfg.write_text(json.dumps(c, indent=2))
    q1 = project / "round-001" / "queries.csv"
    rows = read_rows(q1)
    for k, row in enumerate(rows):
        row["label"] = "other" if k == 0 else "2" if k == 1 else "0"
    write_rows(q1, rows)
    before = snapshot(project)
    r = aift("teach", project, q1)
    assert r.exit_code == 2, (r.output, r.stderr)
    assert_survived(before, project)  # the ledger and every file, byte for byte
    assert snapshot(project).keys() == before.keys()
    line = one_line_error(r.stderr)
    assert str(cfg) in line and "class_names" in line and "other" in line
    assert (project / "ledger.jsonl").read_bytes() == b""
    cfg.write_bytes(original)  # the user puts the classes back: everything works again
    out = status_ok(project)
    assert "labels: 0 (negative 0, positive 0)" in out
    assert (project / "ledger.jsonl").read_bytes() == b""


# ------------------------------------------------------------------------------------------------
# 4. values read back from the project
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw_id, shown", [("{id}.7", "{id}.7"), ("Infinity", "Infinity"), ("1e30", "1e+30"),
                                           ("\"{id}\"", "\"{id}\""), ("true", "true")])
def test_ledger_ids_must_be_integers(project, base, raw_id, shown):
    pid = pool_ids(base["store"])[0]
    raw_id, shown = raw_id.format(id=pid), shown.format(id=pid)
    good = json.dumps({"id": pid, "label": 0, "round": 1, "query_round": None})
    bad = good.replace(f'"id": {pid}', f'"id": {raw_id}')
    (project / "ledger.jsonl").write_text(good + "\n" + bad + "\n")
    before = snapshot(project)
    r = aift("status", project)
    assert r.exit_code == 2, (r.output, r.stderr)
    line = one_line_error(r.stderr)
    assert f"{project / 'ledger.jsonl'} line 2" in line and f"id {shown}" in line and "not an integer" in line
    assert_survived(before, project)


def test_ledger_labels_and_ids_out_of_range_name_the_file_and_line(project, base):
    pid = pool_ids(base["store"])[0]
    led = project / "ledger.jsonl"
    led.write_text(json.dumps({"id": pid, "label": 7, "round": 1}) + "\n")
    r = aift("status", project)
    line = one_line_error(r.stderr)
    assert r.exit_code == 2 and f"{led} line 1" in line and "label 7" in line and "0=negative, 1=positive" in line
    led.write_text("\n" + json.dumps({"id": 10 ** 30, "label": 0, "round": 1}) + "\n")
    r = aift("status", project)
    line = one_line_error(r.stderr)
    assert r.exit_code == 2 and f"{led} line 2" in line and "out of range (0..55)" in line


def test_query_json_ids_are_validated(project):
    f = project / "round-001" / "query.json"
    info = json.loads(f.read_text())
    info["ids"][0] = 1e30
    f.write_text(json.dumps(info))
    r = aift("status", project)
    line = one_line_error(r.stderr)
    assert r.exit_code == 2 and str(f) in line and "1e+30" in line


def test_status_escapes_terminal_control_characters(tmp_path):
    a = make_separable_arrays(n=24, seed=1)
    store = tmp_path / "evil.h5"
    evil = ["neg\x1b]0;owned\x07", "pos\x1b[2J\u202e"]
    write_store(store, a["patches"], a["labels"], a["groups"], a["split"], app="app\x1b[31m", class_names=evil)
    project = tmp_path / "p"
    r = aift("init", project, "--data", store, "--epochs", 1, "--quiet")
    assert r.exit_code == 0, r.stderr
    out = status_ok(project)
    for ch in ("\x1b", "\x07", "\u202e"):
        assert ch not in out
    assert "neg\\x1b]0;owned\\x07 0" in out and "pos\\x1b[2J\\u202e 0" in out and "app\\x1b[31m" in out
    bad = tmp_path / "bad.csv"
    write_rows(bad, [{"id": pool_ids(store)[0], "label": "maybe"}])
    r = aift("teach", project, bad)
    line = one_line_error(r.stderr)
    assert "\x1b" not in r.stderr and "0=neg\\x1b]0;owned\\x07" in line


def test_created_files_and_folders_follow_the_umask(base, tmp_path):
    old = os.umask(0o002)  # a team's shared project: group members read and write
    try:
        project = tmp_path / "shared"
        r = aift("init", project, "--data", base["store"], "--epochs", 1, "--quiet")
        assert r.exit_code == 0, r.stderr
        r = aift("query", project, "-n", 3, "--quiet")
        assert r.exit_code == 0, r.stderr
        os.umask(0o027)
        with atomic_path(tmp_path / "f.bin") as tmp:
            tmp.write_bytes(b"x")
        with atomic_dir(tmp_path / "d") as tmp:
            pass
    finally:
        os.umask(old)

    def mode(p):
        return stat.S_IMODE(os.stat(p).st_mode)

    for d in (project, project / "checkpoints", project / "checkpoints" / "round-000", project / "round-001",
              project / "round-001" / "patches"):
        assert mode(d) == 0o775, (d, oct(mode(d)))
    for f in (project / "config.json", project / "ledger.jsonl", project / "checkpoints" / "round-000" / "state.json",
              project / "checkpoints" / "round-000" / "model.keras", project / "round-001" / "queries.csv",
              project / "round-001" / "query.json", project / "round-001" / "gallery.html",
              *(project / "round-001" / "patches").iterdir()):
        assert mode(f) == 0o664, (f, oct(mode(f)))
    assert mode(tmp_path / "f.bin") == 0o640 and mode(tmp_path / "d") == 0o750


def test_the_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    """Spy on the real os.fsync: after the rename, the parent folder itself must be fsynced."""
    real = os.fsync
    synced_dirs = []

    def spy(fd):
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            synced_dirs.append((st.st_ino, sorted(p.name for p in tmp_path.iterdir())))
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    write_text_atomic(tmp_path / "ledger.jsonl", "x\n")
    ino = os.stat(tmp_path).st_ino
    assert (ino, ["ledger.jsonl"]) in synced_dirs  # fsynced once the new name was in place
    synced_dirs.clear()
    with atomic_dir(tmp_path / "round-001", replace=False) as tmp:
        (tmp / "queries.csv").write_text("id,label\n")
    assert (ino, ["ledger.jsonl", "round-001"]) in synced_dirs


def test_replay_pending_is_the_silent_replay_and_recover_is_its_deprecated_alias(project):
    """``Project.replay_pending()`` re-applies pending ledger rounds (nothing pending: no records);
    ``Project.recover()``, which collided with ``aift recover`` (= ``Project.repair()``), warns and does the same."""
    from aift_tf.annotation.project import Project

    with Project(project) as p:
        assert p.replay_pending() == []
        with pytest.warns(DeprecationWarning, match="replay_pending"):
            assert p.recover() == []
