"""Pair a random baseline from one aift-sim run with the strategies of another, checked, and rebuild the report.

Two runs on the same store with the same settings share, seed by seed, M0's head, the initial random set, the test
set, full training and the target (config.json's notes: "every strategy of a seed shares them"). So the random
baseline of one run (say ``--strategies aift,random``: continual random, ACFT-LQ) can be compared, paired, with the
strategies of another that used a different learning strategy (say ``--learning AFT --strategies
aift,random-rft``), as if both had run in one invocation. This script checks that they did share all of it (the
store's sha256, or for a store the harness generated, its record less the generation time it holds; M0, the plan, every setting except the strategies, the learning strategies and the export flags,
target.json, full training's rows, and round 0 (M0) and round 1 (the initial set) of every seed), refuses with one
line naming the first difference otherwise, and writes a new run folder: BASE's files plus the taken baseline's
rows, config.json saying which learning that baseline used and where its rows came from (``notes.paired_from``),
and the report rebuilt by simulate.report.build_report. Only random baselines (``random``, ``random-rft``) can be
taken: their queries do not depend on the model, so nothing in BASE's strategies depends on them.

    PYTHONPATH=. python benchmarks/pair_runs.py docs/results/m0-comparison/pe-aft-vs-random-rft-10seeds \\
        docs/results/m0-comparison/pe-aift-vs-random-10seeds --take random --out /tmp/pe-aft-with-random

With ``--difference STRATEGY`` it prints instead STRATEGY of BASE minus STRATEGY of OTHER at the report's
checkpoints (paired bootstrap over seeds, as the report's "AIFT − random" numbers), after the same checks: e.g.
AIFT learning with restarts (AFT) against AIFT learning continually (ACFT-LQ) on the same seeds.

    PYTHONPATH=. python benchmarks/pair_runs.py docs/results/m0-comparison/pe-aft-vs-random-rft-10seeds \\
        docs/results/m0-comparison/pe-aift-vs-random-10seeds --difference aift
"""

from __future__ import annotations

import sys
from pathlib import Path

from aift_tf.errors import AiftError
from simulate import run_folder as rf
from simulate.plan import read_run
from simulate.report import RANDOM_REFERENCES, build_report, checkpoint_differences
from simulate.run_folder import FULL

#: settings that may differ between the two runs (which strategies ran, how they learned, what was exported)
MAY_DIFFER = ("strategies", "learning", "random_learning", "export", "export_every_round", "distribute", "data")


def _learning_of(run, strategy: str) -> str:
    """The learning strategy `strategy` of `run` used (as the report states it)."""
    if strategy not in RANDOM_REFERENCES:
        return run.settings.learning
    return "RFT" if strategy == "random-rft" else (run.settings.random_learning or run.settings.learning)


def _generated_record(data: dict) -> dict:
    """A generated store's record without what differs between two generations of the same store (its path, and
    the generation time it records, hence its sha256); the generator, its seed and every count remain."""
    attrs = {k: v for k, v in (data.get("attrs") or {}).items() if k != "generation_seconds"}
    return {k: v for k, v in data.items() if k not in ("path", "sha256")} | {"attrs": attrs}


def _seed_rows(rows, strategy, rnd) -> dict:
    return {int(r["seed"]): (int(r["labels"]), r["test_auc"]) for r in rows
            if r["strategy"] == strategy and int(r["round"]) == rnd}


def _require_strategy(run, folder: Path, strategy: str) -> None:
    if strategy not in run.settings.strategies:
        raise AiftError(f"{folder}: strategy {strategy!r} did not run there "
                        f"(it ran {', '.join(run.settings.strategies)})")


def check_paired(base: Path, other: Path, take: str, base_run, other_run, base_rows, other_rows) -> None:
    """Raise AiftError naming the first thing the two runs do not share (for taking OTHER's baseline `take`)."""
    if take not in RANDOM_REFERENCES:
        raise AiftError(f"--take {take!r}: only a random baseline ({', '.join(RANDOM_REFERENCES)}) can be paired")
    _require_strategy(other_run, other, take)
    if take in base_run.settings.strategies:
        raise AiftError(f"{base}: strategy {take!r} already ran there")
    check_shared(base, other, base_run, other_run, base_rows, other_rows, take)


def check_shared(base: Path, other: Path, base_run, other_run, base_rows, other_rows, other_job: str) -> None:
    """Raise AiftError naming the first thing runs BASE and OTHER do not share: the store, M0, the plan, every
    setting but MAY_DIFFER, the target, full training's rows, and each seed's M0 and initial-set rows (BASE's
    first strategy against OTHER's `other_job`)."""
    if base_run.data.get("sha256") != other_run.data.get("sha256") and not (
            base_run.settings.data is None and other_run.settings.data is None
            and _generated_record(base_run.data) == _generated_record(other_run.data)):
        raise AiftError(f"{other}: another store (sha256 {other_run.data.get('sha256')!r}, "
                        f"{base} has {base_run.data.get('sha256')!r})")
    if base_run.m0 != other_run.m0:
        raise AiftError(f"{other}: another M0 ({other_run.m0.get('weights') or other_run.m0})")
    plan, other_plan = base_run.plan.to_dict(), other_run.plan.to_dict()
    for key in plan:
        if plan[key] != other_plan.get(key):
            raise AiftError(f"{other}: plan field {key!r} is {other_plan.get(key)!r}, {base} has {plan[key]!r}")
    a, b = base_run.settings.to_dict(), other_run.settings.to_dict()
    for key in a:  # a setting the plan resolves (seeds, steps, ...: None = the default) is compared resolved, above
        if key not in MAY_DIFFER and key not in plan and a[key] != b.get(key):
            raise AiftError(f"{other}: setting {key!r} is {b.get(key)!r}, {base} has {a[key]!r}")
    if rf.read_target(base) != rf.read_target(other):
        raise AiftError(f"{other}: target.json differs from {base}'s")
    full = [sorted((int(r["seed"]), r["test_auc"]) for r in rows if r["strategy"] == FULL)
            for rows in (base_rows, other_rows)]
    if full[0] != full[1]:
        raise AiftError(f"{other}: full training's rows differ from {base}'s")
    ref = base_run.settings.strategies[0]  # every strategy of a seed shares M0 and the initial set
    for rnd, what in ((0, "M0"), (1, "the initial set")):
        mine, theirs = _seed_rows(base_rows, ref, rnd), _seed_rows(other_rows, other_job, rnd)
        if set(mine) != set(theirs):
            raise AiftError(f"{other}: seeds {sorted(theirs)} of {other_job!r}, {base} has seeds {sorted(mine)}")
        for seed in sorted(mine):
            if mine[seed] != theirs[seed]:
                raise AiftError(f"{other}: seed {seed}'s round {rnd} ({what}) is {theirs[seed]}, "
                                f"{base} has {mine[seed]}")


def difference_lines(base, other, strategy: str) -> list:
    """BASE's `strategy` minus OTHER's `strategy` at the report's checkpoints (simulate.report.checkpoint_differences),
    after checking that the two runs are paired: one line per checkpoint with the labels, the mean difference, its
    95% CI and each run's learning strategy."""
    base, other = Path(base), Path(other)
    base_run, other_run = read_run(base), read_run(other)
    base_rows, other_rows = rf.read_rounds(base), rf.read_rounds(other)
    _require_strategy(base_run, base, strategy)
    _require_strategy(other_run, other, strategy)
    check_shared(base, other, base_run, other_run, base_rows, other_rows, strategy)
    diffs = checkpoint_differences(base_rows, strategy, other_rows, strategy, base_run.plan)
    who = f"{strategy} ({_learning_of(base_run, strategy)}) − {strategy} ({_learning_of(other_run, strategy)})"
    return [f"{who} at {labels} labels: {d['mean']:+.3f} (95% CI {d['ci95'][0]:+.3f} to {d['ci95'][1]:+.3f})"
            for labels, d in diffs.items()]


def pair_runs(base, other, take: str, out, argv=None) -> Path:
    """Write run folder `out`: run `base` plus the random baseline `take` of run `other` (checked to be paired)."""
    base, other = Path(base), Path(other)
    base_run, other_run = read_run(base), read_run(other)
    base_rows, other_rows = rf.read_rounds(base), rf.read_rounds(other)
    check_paired(base, other, take, base_run, other_run, base_rows, other_rows)
    out = rf.check_new_out_dir(out)
    config = base_run.to_dict()
    settings = dict(config["settings"], strategies=list(base_run.settings.strategies) + [take])
    if take == "random":
        settings["random_learning"] = _learning_of(other_run, take)
    command = ["python", "benchmarks/pair_runs.py", *(argv or [str(base), str(other), "--take", take,
                                                               "--out", str(out)])]
    config.update(settings=settings, command=command, command_line=" ".join(command),
                  notes=dict(config.get("notes") or {}, paired_from={
                      "base": {"folder": base.name, "command_line": base_run.command_line},
                      "taken": {"strategy": take, "learning": _learning_of(other_run, take), "folder": other.name,
                                "command_line": other_run.command_line}}))
    rf.write_config(out, config)
    rf.write_target(out, rf.read_target(base))
    rf.write_training_curves(out, rf.read_training_curves(base))
    rf.write_rounds(out, base_rows + [r for r in other_rows if r["strategy"] == take])
    build_report(out)
    return out


def main(argv=None) -> None:
    import click

    from aift_tf.cli_support import run_cli

    args = list(sys.argv[1:] if argv is None else argv)

    @click.command(context_settings={"help_option_names": ["-h", "--help"]})
    @click.argument("base", type=click.Path(file_okay=False))
    @click.argument("other", type=click.Path(file_okay=False))
    @click.option("--take", type=click.Choice(RANDOM_REFERENCES), help="the baseline of OTHER to add")
    @click.option("--out", type=click.Path(file_okay=False), help="the new run folder (with --take)")
    @click.option("--difference", metavar="STRATEGY",
                  help="instead: print BASE's STRATEGY minus OTHER's at the report's checkpoints, paired")
    def cli(base, other, take, out, difference):
        """Add OTHER's random baseline TAKE to run BASE, paired, in a new run folder OUT with its report; or,
        with --difference, compare one strategy of the two runs (e.g. learning two ways), paired."""
        if difference is not None:
            if take is not None or out is not None:
                raise click.UsageError("--difference takes neither --take nor --out")
            for line in difference_lines(base, other, difference):
                click.echo(line)
            return
        if take is None or out is None:
            raise click.UsageError("give --take and --out (or --difference STRATEGY)")
        click.echo(rf.report_path(pair_runs(base, other, take, out, argv=args)))

    run_cli(cli, args, prog_name="benchmarks/pair_runs.py")


if __name__ == "__main__":
    main()
