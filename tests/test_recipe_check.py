"""benchmarks/recipe_check.py reads the committed check folders as the m0-comparison README's table states them."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
M0 = REPO / "docs" / "results" / "m0-comparison"


def _table(*runs, strategy="random"):
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "recipe_check.py"), "--strategy", strategy,
                          *map(str, runs)], capture_output=True, text=True, cwd=REPO,
                         env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
    assert out.returncode == 0, out.stderr
    return {line.split(" | ")[0].lstrip("| "): line for line in out.stdout.splitlines() if line.startswith("| ")}


def test_recipe_check_reads_the_colonoscopy_check_against_the_default_run():
    rows = _table(M0 / "colonoscopy-aift-vs-random-10seeds", M0 / "colonoscopy-random-early-stopping-3seeds")
    default, check = rows["colonoscopy-aift-vs-random-10seeds"], rows["colonoscopy-random-early-stopping-3seeds"]
    # the budget is round rounds + 1 (round 1 is the initial set): 270 labels here
    assert "max(80 steps, 4 passes), no validation | 0.942 / 0.924 / 0.951 (mean 0.939) | on 0 of 3" in default
    assert "≤ 80 steps in 5 validation checks, best kept" in check
    assert "on 3 of 3 (at 336, 96, 28 labels)" in check and "338 / 270 / 270" in check
    assert "0.974 / 0.963 / 0.969" in default and "0.974 / 0.963 / 0.969" in check  # full training, same seeds


def test_recipe_check_states_the_floor_kept_with_validation():
    rows = _table(M0 / "pe-random-recipes-3seeds" / "early-stopping-floor-4", M0 / "pe-random-recipes-3seeds" / "step-cap-80")
    assert "≤ max(80 steps, 4 passes) in 5 validation checks, best kept" in rows["early-stopping-floor-4"]
    assert "| 80 steps, no validation |" in rows["step-cap-80"]


def test_recipe_check_reads_the_epoch_recipe_and_random_rft_as_the_readme_states():
    rows = _table(M0 / "pe-random-recipes-3seeds" / "epochs-30-early-stopping")
    row = rows["epochs-30-early-stopping"]
    assert "| ≤ 30 passes, one validation check each (patience 2), best kept |" in row
    assert "on 2 of 3 (at 455, 1027 labels)" in row and "1074 / 477 / 1074: 0.873 / 0.883 / 0.881" in row
    rft = _table(M0 / "pe-random-rft-3seeds", strategy="random-rft")["pe-random-rft-3seeds"]
    assert "| max(80 steps, 4 passes), no validation | 0.893 / 0.898 / 0.798 (mean 0.863) |" in rft
    assert "on 3 of 3 (at 421, 359, 1022 labels)" in rft and "0.891 / 0.896 / 0.884 (mean 0.890)" in rft


def test_recipe_check_marks_seeds_without_full_training():
    """Full training runs on the first 3 seeds only: the other seeds show '—' and the means skip them."""
    rows = _table(M0 / "pe-aft-vs-random-rft-10seeds", strategy="aift")
    row = rows["pe-aft-vs-random-rft-10seeds"]
    assert "0.891 / 0.896 / 0.884 / — / — / — / — / — / — / — (mean 0.890)" in row
    assert "on 10 of 10 (at 329, 309, 246, 247, 191, 140, 434, 310, 415, 373 labels)" in row
    assert "nan" not in row


def test_recipe_check_reads_the_one_pass_restart_check_on_pe28():
    """random-rft with --round-passes 1 on the 28x28x1 import, beside the 4-pass random-rft (same seeds, store, target)."""
    rows = _table(M0 / "pe28-random-rft-3seeds", M0 / "pe28-random-rft-passes1-3seeds", strategy="random-rft")
    four, one = rows["pe28-random-rft-3seeds"], rows["pe28-random-rft-passes1-3seeds"]
    assert "| max(80 steps, 4 passes), no validation | 0.803 / 0.724 / 0.737 (mean 0.754) | on 0 of 3 |" in four
    assert "| max(80 steps, 1 pass), no validation | 0.816 / 0.812 / 0.812 (mean 0.813) |" in one
    assert "on 2 of 3 (at 594, 1027 labels)" in one and "1074 / 597 / 1074: 0.814 / 0.832 / 0.837 (mean 0.828)" in one
    assert "0.849 / 0.832 / 0.844 (mean 0.842)" in four and "0.849 / 0.832 / 0.844 (mean 0.842)" in one


def test_recipe_check_reads_the_one_pass_continual_check_on_pe28():
    """aift and random with --round-passes 1 (continual) on the 28x28x1 import, beside seeds 0-2 of the 10-seed run."""
    for strategy, four_row, one_row, one_last in [
        ("random", "0.804 / 0.740 / 0.732 (mean 0.758)", "0.795 / 0.748 / 0.742 (mean 0.762)",
         "1074 / 1074 / 1074: 0.789 / 0.790 / 0.793 (mean 0.791)"),
        ("aift", "0.782 / 0.717 / 0.765 (mean 0.754)", "0.773 / 0.781 / 0.754 (mean 0.769)",
         "1074 / 1074 / 1074: 0.757 / 0.792 / 0.781 (mean 0.777)"),
    ]:
        rows = _table(M0 / "pe28-aift-vs-random-10seeds", M0 / "pe28-continual-passes1-3seeds", strategy=strategy)
        four, one = rows["pe28-aift-vs-random-10seeds"], rows["pe28-continual-passes1-3seeds"]
        assert f"| max(80 steps, 4 passes), no validation | {four_row} | on 0 of 3 |" in four
        assert f"| max(80 steps, 1 pass), no validation | {one_row} | on 0 of 3 |" in one and one_last in one
        assert "0.849 / 0.832 / 0.844 (mean 0.842)" in one
