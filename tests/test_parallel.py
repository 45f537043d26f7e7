"""aift-sim's worker processes (simulate.parallel): the same numbers as one process, and their options."""

import csv
import json

import pytest

from aift_tf.errors import AiftError
from simulate.parallel import MAX_AUTO_WORKERS, check_workers, cpu_cores, resolve_workers

TIMING = ("finetune_seconds", "scoring_seconds")


def test_resolve_workers():
    assert resolve_workers("auto", 33) == min(cpu_cores(), MAX_AUTO_WORKERS)
    assert resolve_workers(None, 33) == resolve_workers("AUTO", 33)
    assert resolve_workers("auto", 33, distribute="mirrored") == 1  # the strategy spreads one job itself
    assert resolve_workers(3, 2) == 2 and resolve_workers("3", 5) == 3  # never more than the jobs
    assert resolve_workers(4, 0) == 1
    assert check_workers("2") == 2 and check_workers("auto") == "auto"
    for bad in (0, -1, "two", 1.5, True):
        with pytest.raises(AiftError, match="workers must be"):
            check_workers(bad)
    with pytest.raises(AiftError, match="workers must be 1 with distribute 'mirrored'; got 2|workers must be 1"):
        check_workers(2, distribute="mirrored")


def test_cli_refuses_bad_workers_before_the_run_folder(tmp_path):
    from simulate.sim_cli import main

    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        main(["--data", str(tmp_path / "missing.h5"), "--workers", "0", "--out", str(out)])
    assert e.value.code == 2 and not out.exists()


def _rounds(out):
    with open(out / "rounds.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(f)]


def test_two_workers_give_the_one_process_numbers(tmp_path, capsys):
    """The guard's cached-top run on 1 and on 2 worker processes: every row of rounds.csv (AUCs to the last
    digit), the target and the verdict are the same; the parent prints every job's lines."""
    from simulate.sim_cli import main
    from test_behaviour_unchanged import COMMON, _store

    store = _store(tmp_path / "guard.h5")
    common = [a for a in COMMON if a != "--quiet"] + ["--trainable", "top"]
    runs = {}
    for workers in ("1", "2"):
        out = runs[workers] = tmp_path / f"w{workers}"
        with pytest.raises(SystemExit) as e:
            main(["--data", str(store), *common, "--workers", workers, "--out", str(out)])
        assert e.value.code == 0
    printed = capsys.readouterr().out
    assert "workers: 2 processes" in printed and printed.count("random-rft seed 1 round 3") == 2
    assert _rounds(runs["1"]) == _rounds(runs["2"])
    assert (runs["1"] / "target.json").read_text() == (runs["2"] / "target.json").read_text()
    s1, s2 = (json.loads((runs[w] / "summary.json").read_text()) for w in ("1", "2"))
    assert s1["verdict"] == s2["verdict"] and s2["runtime"]["workers"] == 2 and s1["runtime"]["workers"] == 1


@pytest.mark.slow
def test_a_killed_worker_stops_the_run_with_one_line_and_resume_finishes_it(tmp_path):
    """SIGKILL one worker mid-run: aift-sim exits 2 with one line (no traceback), the other worker is stopped,
    and --resume gives the rounds.csv of an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from test_behaviour_unchanged import COMMON, _store
    from test_sim import ENV

    store = _store(tmp_path / "guard.h5")
    args = ["--data", str(store), *COMMON, "--trainable", "top"]
    ref = tmp_path / "ref"
    r = subprocess.run([sys.executable, "-m", "simulate.sim_cli", *args, "--workers", "1", "--out", str(ref)],
                       env=ENV, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]

    out = tmp_path / "killed"
    p = subprocess.Popen([sys.executable, "-m", "simulate.sim_cli", *args, "--workers", "2", "--out", str(out)],
                         env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    marker = out / "state" / "aift" / "seed0" / "round-001"
    deadline = time.time() + 600
    while not marker.is_dir() and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.is_dir(), p.stderr.read() if p.poll() is not None else "timeout"
    children = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
    workers = [int(c) for c in children
               if "spawn_main" in open(f"/proc/{c}/cmdline").read() and "resource_tracker" not in
               open(f"/proc/{c}/cmdline").read()]
    assert workers, children
    os.kill(workers[0], signal.SIGKILL)
    err = p.communicate(timeout=300)[1]
    assert p.returncode == 2, err[-2000:]
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "a worker process died" in lines[0] and "Traceback" not in err, err[-2000:]
    def alive(pid):
        try:
            return open(f"/proc/{pid}/stat").read().split()[2] != "Z"
        except OSError:
            return False

    deadline = time.time() + 30
    while any(alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(alive(w) for w in workers)  # the other worker was stopped too

    r = subprocess.run([sys.executable, "-m", "simulate.sim_cli", "--out", str(out), "--resume", "--quiet"],
                       env=ENV, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _rounds(out) == _rounds(ref)
