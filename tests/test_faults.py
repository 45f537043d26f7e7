"""Issue 12 part 4: faults survived.

- One atomic write path (aift_tf/files.py): a write refused by the disk (ENOSPC, EACCES, EROFS, ...) becomes one
  line naming the final file, the temporaries are removed, and the command leaves the project as it was.
  Fault injection: ``os.fsync`` (called once per file by the atomic writers, where a full disk also shows up
  for real) raises at the k-th file, for ``init``, ``query``, ``teach`` and ``export``; then ``aift status`` works
  and repeating the command without the fault succeeds with nothing lost or duplicated. Where the tests run as
  root, a real tiny tmpfs fills up during Keras' / h5py's own writes as well.
- Every file read back is validated field by field: tampered config.json, state.json, query.json, a deleted
  M0 weights file each give one line naming the file and field; after the fix, everything works again.
- Large CSVs are streamed (a 12 MB CSV of short rows under a 650 MB address-space limit), and an object-array .npz says
  that pickle is refused.
"""

import errno
import gc
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aift_tf.files import WriteFailed, atomic_dir, atomic_path, write_failure, write_text_atomic
from test_aift_cli import (ROOT, aift, base, first_labels, ledger, one_line_error, project,  # noqa: F401
                           read_rows)
from test_project_safety import assert_survived, snapshot, status_ok


class FsyncFaults:
    """Spy on os.fsync: record every regular file fsynced; raise OSError(err) at the ``fail_at``-th one."""

    def __init__(self, monkeypatch):
        self.real = os.fsync
        self.files, self.fail_at, self.err = [], None, errno.ENOSPC
        monkeypatch.setattr(os, "fsync", self)

    def arm(self, k, err=errno.ENOSPC):
        self.files, self.fail_at, self.err = [], k, err

    def __call__(self, fd):
        if stat.S_ISREG(os.fstat(fd).st_mode):
            self.files.append(os.readlink(f"/proc/self/fd/{fd}"))
            if len(self.files) == self.fail_at:
                raise OSError(self.err, os.strerror(self.err))
        return self.real(fd)


def no_temporaries(folder):
    left = [p for p in Path(folder).rglob(".*") if p.name.endswith((".tmp", ".old", ".trash"))
            or ".tmp" in p.name]
    assert not left, left


# ------------------------------------------------------------------------------------------------
# the write path itself
# ------------------------------------------------------------------------------------------------


def test_write_errors_become_one_line_naming_the_final_file(tmp_path, monkeypatch):
    faults = FsyncFaults(monkeypatch)
    for err, words in ((errno.ENOSPC, "no space left on the device"), (errno.EACCES, "permission denied"),
                       (errno.EROFS, "read-only file system"), (errno.EDQUOT, "disk quota exceeded")):
        faults.arm(1, err)
        with pytest.raises(WriteFailed) as ei:
            write_text_atomic(tmp_path / "ledger.jsonl", "x\n")
        assert str(ei.value) == f"{tmp_path / 'ledger.jsonl'}: cannot write ({words}); nothing was changed"
        assert list(tmp_path.iterdir()) == []
    # inside a folder written atomically, the error names the file as it would have been, not the temporary
    faults.arm(2)
    with pytest.raises(WriteFailed, match=r"round-001/patches/2\.png: cannot write \(no space"):
        with atomic_dir(tmp_path / "round-001", replace=False) as tmp:
            (tmp / "patches").mkdir()
            for k in (1, 2, 3):
                with atomic_path(tmp / "patches" / f"{k}.png") as t:
                    t.write_bytes(b"png")
    assert list(tmp_path.iterdir()) == []
    # libraries writing through C do not always set errno: their message is recognised
    assert write_failure("m.h5", OSError("Unable to write (errno = 28, error message = 'No space left on device')")
                         ).reason == "no space left on the device"
    assert write_failure("x", ValueError("no")) is None and write_failure("x", OSError(errno.ENOENT, "x")) is None


# ------------------------------------------------------------------------------------------------
# disk full at each write of init / query / teach / export
# ------------------------------------------------------------------------------------------------


def _sweep(cmd, setup, check_ok, monkeypatch, tmp_path, which="ends", errs=(errno.ENOSPC,)):
    """Run ``cmd(workdir)`` once fault-free to count its file writes, then with the k-th write failing (every k
    if ``which`` is "every", the first and the last for "ends", the last for "last"), each on a fresh copy made
    by ``setup``. The default run keeps to a few k (each costs a real command, twice); the slow test does all."""
    faults = FsyncFaults(monkeypatch)
    work = setup(tmp_path / "count")
    faults.arm(None)
    r = cmd(work)
    assert r.exit_code == 0, r.stderr
    n = len(faults.files)
    assert n >= 1
    ks = {"every": range(1, n + 1), "ends": sorted({1, n}), "last": [n]}[which]
    for err in errs:
        for k in ks:
            work = setup(tmp_path / f"k{k}-{err}")
            parent = work.parent
            before = snapshot(parent)
            faults.arm(k, err)
            r = cmd(work)
            faults.arm(None)
            assert r.exit_code == 2, (k, r.output, r.stderr)
            line = one_line_error(r.stderr)
            assert "cannot write (" in line and "nothing was changed" in line, line
            assert ".tmp" not in line  # the final file is named, never the temporary
            assert_survived(before, parent)  # the project (and the folder around it) as it was
            assert snapshot(parent).keys() == before.keys()
            no_temporaries(parent)
            check_ok(work, repeat=False)
            r = cmd(work)  # the fault is gone: the same command succeeds
            assert r.exit_code == 0, (k, r.stderr)
            check_ok(work, repeat=True)
    return n


def _copy(base):
    def setup(d):
        d.mkdir(parents=True)
        shutil.copytree(base["project"], d / "proj")
        return d / "proj"
    return setup


def test_disk_full_during_teach(base, tmp_path, monkeypatch):
    first = tmp_path / "first.csv"
    truth = first_labels(_copy(base)(tmp_path / "probe"), base["store"], first)

    def cmd(p):
        return aift("teach", p, first, "--quiet")

    def check(p, repeat):
        assert "teach rounds: " + ("1" if repeat else "0") in status_ok(p)
        led = ledger(p)
        assert len(led) == (len(truth) if repeat else 0)  # nothing lost, nothing duplicated
        if repeat:
            assert {e["id"]: e["label"] for e in led} == truth and {e["round"] for e in led} == {1}

    n = _sweep(cmd, _copy(base), check, monkeypatch, tmp_path, which="last")  # every k: the slow test below
    assert n == 4  # the ledger, then model.keras, m0.weights.h5 and state.json of checkpoint round-001


def test_disk_full_during_query(base, tmp_path, monkeypatch):
    def cmd(p):
        return aift("query", p, "-n", 3, "--force", "--quiet")

    def check(p, repeat):
        out = status_ok(p)
        assert ("round-002: 3 queried" in out) == repeat and "round-003" not in out

    n = _sweep(cmd, _copy(base), check, monkeypatch, tmp_path, which="last", errs=(errno.EROFS,))
    assert n == 3 + 3  # patches/<id>.png x3, queries.csv, gallery.html, query.json


def test_disk_full_during_init(base, tmp_path, monkeypatch):
    def setup(d):
        d.mkdir(parents=True)
        return d / "new"

    def cmd(p):
        return aift("init", p, "--data", base["store"], "--epochs", 1, "--quiet")

    def check(p, repeat):
        assert p.exists() == repeat and [x.name for x in p.parent.iterdir()] == (["new"] if repeat else [])
        if repeat:
            assert "teach rounds: 0" in status_ok(p)
        else:
            r = aift("status", p)
            assert r.exit_code == 2 and "no such project folder" in one_line_error(r.stderr)

    assert _sweep(cmd, setup, check, monkeypatch, tmp_path, which="last", errs=(errno.EACCES,)) == 6  # config,
    # ledger, the lock file, model, m0 weights, state


def test_disk_full_during_export(base, tmp_path, monkeypatch):
    def setup(d):
        d.mkdir(parents=True)
        shutil.copytree(base["project"], d / "proj")
        return d / "proj"

    def cmd(p):
        return aift("export", p, "--out", p.parent / "model", "--quiet")

    def check(p, repeat):
        assert (p.parent / "model" / "provenance.json").is_file() == repeat
        status_ok(p)

    _sweep(cmd, setup, check, monkeypatch, tmp_path, which="last")


@pytest.mark.slow
@pytest.mark.parametrize("command", ["init", "query", "teach", "export"])
def test_disk_full_at_every_write(command, base, tmp_path, monkeypatch):
    """Every k, not only the first / middle / last write."""
    first = tmp_path / "first.csv"
    first_labels(_copy(base)(tmp_path / "probe"), base["store"], first)
    cmds = {"query": (lambda p: aift("query", p, "-n", 3, "--force", "--quiet")),
            "teach": (lambda p: aift("teach", p, first, "--quiet")),
            "export": (lambda p: aift("export", p, "--out", p.parent / "model", "--quiet")),
            "init": (lambda p: aift("init", p.parent / "new", "--data", base["store"], "--epochs", 1, "--quiet"))}
    _sweep(cmds[command], _copy(base), lambda p, repeat: status_ok(p), monkeypatch, tmp_path, which="every",
           errs=(errno.ENOSPC, errno.EACCES, errno.EROFS))


def _mount_tmpfs(path, size):
    if os.geteuid() != 0:
        return False
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return r.returncode == 0


@pytest.mark.parametrize("free_mb", [pytest.param(0.05, marks=pytest.mark.slow), 1,
                                     pytest.param(4, marks=pytest.mark.slow)])
def test_a_real_full_disk_during_teach(base, tmp_path, free_mb):
    """A real tmpfs filling up while Keras / h5py write the checkpoint (not only at fsync)."""
    mnt = tmp_path / "disk"
    if not _mount_tmpfs(mnt, "24m"):
        pytest.skip("mounting a tmpfs needs root (the fsync fault injection above covers every write)")
    try:
        project = mnt / "proj"
        shutil.copytree(base["project"], project)
        first = tmp_path / "first.csv"
        first_labels(project, base["store"], first)
        st = os.statvfs(mnt)
        balloon = mnt / "balloon"
        balloon.write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - int(free_mb * 2 ** 20)))
        before = snapshot(project)
        r = aift("teach", project, first, "--quiet")
        assert r.exit_code == 2, (r.output, r.stderr)
        line = one_line_error(r.stderr)
        assert "no space left on the device" in line and "nothing was changed" in line
        assert_survived(before, project)
        assert snapshot(project).keys() == before.keys()
        no_temporaries(project)
        assert "teach rounds: 0" in status_ok(project)
        balloon.unlink()
        r = aift("teach", project, first, "--quiet")
        assert r.exit_code == 0, r.stderr
        assert "teach rounds: 1" in status_ok(project) and {e["round"] for e in ledger(project)} == {1}
    finally:
        gc.collect()  # h5py files of the in-process commands
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# ------------------------------------------------------------------------------------------------
# tampered or damaged files read back
# ------------------------------------------------------------------------------------------------


def _edit_json(path, edit):
    obj = json.loads(path.read_text())
    obj = edit(obj)
    path.write_text(json.dumps(obj))


CONFIG_CASES = [
    ("seed as a string", lambda c: {**c, "seed": "0"}, 'field "seed" "0" is not an integer'),
    ("model as a number", lambda c: {**c, "model": 5}, 'field "model" must be a string, got 5'),
    ("store missing", lambda c: {k: v for k, v in c.items() if k != "store"}, 'field "store" is missing'),
    ("a list instead of an object", lambda c: [c], "not a JSON object (got a list)"),
    ("finetune a list", lambda c: {**c, "finetune": []}, 'field "finetune": not a JSON object (got a list)'),
    ("pool_split a number", lambda c: {**c, "pool_split": 3}, 'field "pool_split" must be a string, got 3'),
    ("omega a string", lambda c: {**c, "omega": "big"}, 'field "omega" "big" is not a finite number'),
    ("strategy unknown", lambda c: {**c, "strategy": "magic"}, 'field "strategy"'),
    ("store_sha256 short", lambda c: {**c, "store_sha256": "abc"}, 'field "store_sha256" must be a 64-digit'),
]


@pytest.mark.parametrize("name, edit, words", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_tampered_config_is_named_by_file_and_field(project, name, edit, words):
    cfg = project / "config.json"
    original = cfg.read_bytes()
    _edit_json(cfg, edit)
    for verb in (("status",), ("query", "-n", 2, "--force"), ("teach", "round-001/queries.csv")):
        r = aift(verb[0], project, *verb[1:])
        assert r.exit_code == 2, (verb, r.output, r.stderr)
        line = one_line_error(r.stderr)
        assert str(cfg) in line and words in line, line
    cfg.write_bytes(original)
    status_ok(project)


STATE_CASES = [
    ("round as a string", lambda s: {**s, "round": "0"}, 'field "round" "0" is not an integer'),
    ("labeled_ids null", lambda s: {**s, "labeled_ids": None}, 'field "labeled_ids" must be a list, got null'),
    ("history loss text", lambda s: {**s, "history": [{"round": 1, "finetune": {"loss": ["x"]}}]},
     'field "history.finetune.loss" entry "x" is not a finite number'),
    ("a number", lambda s: 7, "not a JSON object (got a number)"),
]


@pytest.mark.parametrize("name, edit, words", STATE_CASES, ids=[c[0] for c in STATE_CASES])
def test_tampered_state_is_named_by_file_and_field(project, name, edit, words):
    f = project / "checkpoints" / "round-000" / "state.json"
    original = f.read_bytes()
    _edit_json(f, edit)
    out = status_ok(project)  # status still answers, naming the damage and `aift recover` (issue 20)
    assert str(f) in out and words in out and "aift recover" in out, out
    r = aift("query", project, "-n", 2, "--force")
    assert r.exit_code == 2, (r.output, r.stderr)
    line = one_line_error(r.stderr)
    assert str(f) in line and words in line, line
    f.write_bytes(original)
    status_ok(project)


def test_query_record_with_string_ids(project):
    f = project / "round-001" / "query.json"
    original = f.read_bytes()
    _edit_json(f, lambda q: {**q, "ids": [str(i) for i in q["ids"]]})
    for verb in ("status", "query"):
        r = aift(verb, project)
        line = one_line_error(r.stderr)
        assert r.exit_code == 2 and str(f) in line and "queried id \"" in line and "is not an integer" in line
    f.write_bytes(original)
    status_ok(project)


def test_deleted_m0_weights_file(project, base, tmp_path):
    (project / "checkpoints" / "round-000" / "m0.weights.h5").unlink()
    first = tmp_path / "first.csv"
    truth = first_labels(project, base["store"], first)
    before = snapshot(project)
    r = aift("teach", project, first)
    assert r.exit_code == 2, (r.output, r.stderr)
    line = one_line_error(r.stderr)
    assert "round-000: damaged checkpoint" in line and f"aift recover {project}" in line
    assert_survived(before, project)
    status_ok(project)
    r = aift("recover", project, "--quiet")
    assert r.exit_code == 0, r.stderr
    r = aift("teach", project, first, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert {e["id"]: e["label"] for e in ledger(project)} == truth


# ------------------------------------------------------------------------------------------------
# large CSVs are streamed; pickle is refused by name
# ------------------------------------------------------------------------------------------------


def test_a_large_csv_is_streamed_under_a_memory_limit(project, tmp_path):
    """12 MB of short rows under a 650 MB address-space limit (the process needs ~400 MB): reading it whole and
    splitting it into lines would not fit (MemoryError); streamed, teach reads to the end in bounded memory."""
    rows = read_rows(project / "round-001" / "queries.csv")
    big = tmp_path / "big.csv"
    with open(big, "w") as f:
        f.write("id,label\n" + f"{rows[0]['id']},\n")
        f.write(",\n" * (6 << 20))  # 6 M blank rows (12 MB)
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (650 << 20, 650 << 20)); "
            "from aift_tf.cli import main; main(sys.argv[1:])")
    env = dict(os.environ, PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "-c", code, "teach", str(project), str(big)], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "1 row(s) with an empty label" in r.stderr and "nothing new" in r.stdout
    # a huge file of bad rows stops after 100 problems (fast) with one line
    with open(big, "w") as f:
        f.write("id,label\n" + "x,1\n" * (1 << 20))
    r = aift("teach", project, big)
    assert r.exit_code == 2 and "line 2: id 'x'" in one_line_error(r.stderr) and "stopped reading after 100" in r.stderr


def test_import_npz_object_array_says_pickle_is_refused(tmp_path):
    npz = tmp_path / "obj.npz"
    np.savez(npz, train_images=np.zeros((4, 8, 8), np.uint8), train_labels=np.array([0, 1, 0, 1]),
             class_names=np.array(["a", 1], dtype=object))
    r = subprocess.run([sys.executable, "-c", "from simulate.data_cli import main; main()", "import-npz", str(npz),
                        "--out", str(tmp_path / "x.h5")], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    line = one_line_error(r.stderr)
    assert "'class_names' is an object array" in line and "pickle is refused" in line
    assert not (tmp_path / "x.h5").exists()
