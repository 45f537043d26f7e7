"""benchmarks/pair_runs.py: a random baseline of one run beside another run's strategies, only when paired."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
M0 = REPO / "docs" / "results" / "m0-comparison"
AFT = M0 / "pe-aft-vs-random-rft-10seeds"  # aift (AFT) + random-rft, 10 seeds
CONTINUAL = M0 / "pe-aift-vs-random-10seeds"  # aift + random (both ACFT-LQ), same store, seeds and settings


def _pair(*args):
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "pair_runs.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                          timeout=300)


def test_pairs_continual_random_with_the_aft_run_as_the_committed_folder_states(tmp_path):
    out = tmp_path / "paired"
    r = _pair(AFT, CONTINUAL, "--take", "random", "--out", out)
    assert r.returncode == 0, r.stderr
    report = (out / "report.md").read_text()
    assert "aift saves 69% of the labels random needs to reach AUC 0.8803 (95% CI 60% to 77%" in report
    assert "| aift | random-rft | 299 | 666 | 55% | 43% to 65% | 0 of 10 | 0 of 10 |" in report  # as in AFT's own
    assert "| random | ACFT-LQ | 0.8391 ± 0.0300 |" in report and "| aift | AFT | 0.8894 ± 0.0221 |" in report
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["strategies"] == ["aift", "random-rft", "random"]
    assert config["notes"]["paired_from"]["taken"]["learning"] == "ACFT-LQ"
    assert "--strategies aift,random --no-export" in config["notes"]["paired_from"]["taken"]["command_line"]
    committed = (M0 / "pe-aft-vs-random-rft-10seeds-paired-with-continual-random" / "report.md").read_text()
    assert report.split("## Figures")[0] == committed.split("## Figures")[0]


def test_refuses_runs_that_are_not_paired_with_one_line(tmp_path):
    cases = [
        (M0 / "colonoscopy-aift-vs-random-10seeds", "random", "another store (sha256"),
        (M0 / "pe-random-rft-3seeds", "random-rft", "strategy 'random-rft' already ran there"),
        (M0 / "pe-random-recipes-3seeds" / "epochs-30-early-stopping", "random", "plan field 'seeds' is 3"),
        (M0 / "pe-random-rft-3seeds", "random", "strategy 'random' did not run there"),
    ]
    for other, take, message in cases:
        r = _pair(AFT, other, "--take", take, "--out", tmp_path / "x")
        assert r.returncode == 2, (other, r.stderr)
        assert r.stderr.startswith("error: ") and message in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
        assert not (tmp_path / "x").exists()
    r = _pair(AFT, CONTINUAL, "--take", "aift", "--out", tmp_path / "x")
    assert r.returncode == 2 and "--take" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("keep")
    r = _pair(AFT, CONTINUAL, "--take", "random", "--out", tmp_path / "x")
    assert r.returncode == 2 and (tmp_path / "x" / "f").read_text() == "keep", r.stderr


def test_difference_of_one_strategy_learning_two_ways_paired():
    """--difference: AIFT with restarts minus continual AIFT on the same seeds, at the report's checkpoints."""
    r = _pair(AFT, CONTINUAL, "--difference", "aift")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "aift (AFT) − aift (ACFT-LQ) at 160 labels: +0.010 (95% CI -0.007 to +0.028)",
        "aift (AFT) − aift (ACFT-LQ) at 266 labels: +0.021 (95% CI +0.003 to +0.038)",
        "aift (AFT) − aift (ACFT-LQ) at 478 labels: +0.036 (95% CI +0.016 to +0.056)"]
    # the paired folder holds AFT's own aift rows (plus the taken baseline): the difference is exactly 0
    r = _pair(AFT, M0 / "pe-aft-vs-random-rft-10seeds-paired-with-continual-random", "--difference", "aift")
    assert r.returncode == 0 and all(" +0.000 (95% CI +0.000 to +0.000)" in x for x in r.stdout.splitlines()), r.stdout


def test_difference_refuses_with_one_line():
    cases = [
        ((AFT, CONTINUAL, "--difference", "random-rft"), "strategy 'random-rft' did not run there"),
        ((AFT, M0 / "colonoscopy-aift-vs-random-10seeds", "--difference", "aift"), "another store (sha256"),
        ((AFT, CONTINUAL, "--difference", "aift", "--take", "random"), "--difference takes neither"),
        ((AFT, CONTINUAL), "give --take and --out"),
    ]
    for args, message in cases:
        r = _pair(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr, r.stderr
