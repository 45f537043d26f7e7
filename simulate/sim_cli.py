"""`aift-sim`: simulate active, incremental fine-tuning on a simulated application or a store.

Thin command-line layer over :mod:`simulate.experiment` (the loop) and :mod:`simulate.report`.
TensorFlow is imported only once a run starts, so `--help` and argument errors answer instantly.

On `--resume` the settings come from DIR/config.json; an explicitly given option that differs from
the run's setting is rejected (exit 2) rather than silently ignored; --quiet may be given freely.
"""

from __future__ import annotations

import sys

import click

from aift_tf.cli_support import run_cli, version_option
from aift_tf.finetune import LEARNING_STRATEGIES  # these imports are TensorFlow-free (`--help` stays instant)
from aift_tf.zoo import MODEL_NAMES, POLICIES
from simulate.apps import APP_NAMES, SCALES
from aift_tf.zoo.pretrained import M0_CHOICES

# CLI parameter name -> SimConfig field
_SETTING = {
    "app": "app", "data": "data", "scale": "scale", "app_seed": "app_seed", "strategies": "strategies",
    "learning": "learning", "random_learning": "random_learning", "omega": "omega", "query_size": "query_size",
    "max_per_group": "max_per_group",
    "rounds": "rounds", "budget": "budget", "seeds": "seeds", "model": "model", "weights": "weights", "m0": "m0",
    "trainable": "trainable", "steps": "steps", "epochs": "epochs", "early_stopping": "early_stopping",
    "full_epochs": "full_epochs", "full_patience": "full_patience", "full_seeds": "full_seeds", "lr": "lr",
    "train_batch_size": "train_batch_size", "initial": "initial", "target_delta": "target_delta", "export": "export",
    "max_labels": "max_labels", "round_passes": "round_passes",
    "export_every_round": "export_every_round", "scratch": "scratch", "cache_trunk": "cache_trunk",
    "distribute": "distribute", "stop": "stop",
}

EPILOG = """\b
Examples:
  aift-sim                                   # PE, quick scale: aift vs both random baselines, 10 seeds
  aift-sim --app colonoscopy-frames --strategies aift,random,entropy@0.5 --seeds 5
  aift-sim --data pool.h5 --budget 200 --query-size 20 --out runs/mine
  aift-sim --out runs/mine --resume          # continue after a crash or Ctrl-C
"""


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
               epilog=EPILOG)
@click.option("--app", type=click.Choice(APP_NAMES), default="pulmonary-embolism", show_default=True,
              help="Simulated application.")
@click.option("--data", type=click.Path(dir_okay=False), metavar="STORE.h5",
              help="Use this candidate store (documented HDF5 format) instead of --app.")
@click.option("--scale", type=click.Choice(SCALES), default="quick", show_default=True,
              help="App data size: quick (CPU minutes) or paper (GPU hours).")
@click.option("--app-seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the app's data generation.")
@click.option("--cache-dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Where generated app stores are cached (default $AIFT_CACHE or ~/.cache/aift-tf).")
@click.option("--strategies", default="aift,random,random-rft", show_default=True, metavar="LIST",
              help="Comma-separated: aift, entropy, diversity, entropy+diversity[@ALPHA], least-confidence, "
                   "margin, mean-entropy, bald[@T] and mc-entropy[@T] (MC dropout, T passes, default 10), coreset "
                   "(k-center greedy on trunk features), aift+coreset[@W] (k-center among the top W x round size "
                   "by AIFT worth, default 3), and the random baselines random (continual: the strategies' "
                   "learning) and random-rft (restart from M0 every round, the journal's RFT).")
@click.option("--learning", type=click.Choice(LEARNING_STRATEGIES), default="ACFT-LQ",
              show_default=True, help="Learning strategy: how each round fine-tunes (journal Table 2).")
@click.option("--random-learning", type=click.Choice(LEARNING_STRATEGIES), default=None,
              help="Learning strategy for 'random' (default: the same as --learning).")
@click.option("--omega", type=click.FloatRange(min=1), default=1.0, show_default=True,
              help="Randomization ω >= 1 of top-b selection (1 = plain top-b).")
@click.option("--max-per-group", type=click.IntRange(min=1), default=None, metavar="K",
              help="No round takes more than K candidates of one group (video / volume / patient: the store's "
                   "groups); applies to every strategy's queries, not to the initial random set.")
@click.option("--query-size", "-n", "query_size", type=click.IntRange(min=1), default=None, metavar="B",
              help="Candidates queried per round (default: budget / rounds).")
@click.option("--batch-size", "batch_size_alias", type=click.IntRange(min=1), default=None, hidden=True,
              help="Deprecated alias of --query-size (--train-batch-size is the patches per gradient step).")
@click.option("--rounds", type=click.IntRange(min=1), default=None, metavar="R",
              help="Query rounds after the initial random set (default 8).")
@click.option("--budget", type=click.IntRange(min=1), default=None, metavar="N",
              help="Total labels incl. the initial set (default 45% of the pool, at most 2000).")
@click.option("--max-labels", type=click.IntRange(min=1), default=None, metavar="N",
              help="Past the planned rounds every strategy x seed (random baselines too) keeps querying until its "
                   "curve's isotonic fit crosses the target, at most to N labels; a seed that has not crossed by "
                   "then is censored (default: the whole pool, at most 4x the planned budget).")
@click.option("--seeds", type=click.IntRange(min=1), default=None, metavar="S",
              help="Paired seeds 0..S-1 (M0 head, initial set, queries, fine-tuning; default 10).")
@click.option("--model", type=click.Choice(MODEL_NAMES), default="small_cnn", show_default=True, help="Zoo model.")
@click.option("--weights", default=None, metavar="none|imagenet|m0|PATH",
              help="Starting weights: m0 (the offline pre-trained M0 shipped with aift_tf, adapted to the patch "
                   "shape; an error if none fits), none, imagenet, or a .keras / .weights.h5 file (default: m0 if "
                   "one fits, else random init with a warning).")
@click.option("--m0", "m0", type=click.Choice(M0_CHOICES), default=None,
              help="M0: the offline pre-trained M0 (default; see --weights) or self-supervised pre-training on this "
                   "store's own unlabeled pool (SimCLR with the candidate's patches as views, 3-5 min on a shared 2-core "
                   "CPU at quick scale, cached per store; labels never read).")
@click.option("--trainable", type=click.Choice(POLICIES), default="top", show_default=True,
              help="Which layers fine-tuning updates.")
@click.option("--steps", type=click.IntRange(min=1), default=None, metavar="K",
              help="Gradient steps per round, at least (quick default 80, paper 200; see --round-passes).")
@click.option("--round-passes", type=click.FloatRange(min=0), default=None, metavar="P",
              help="Each round trains at least P passes over its labeled patches (--steps is the floor), so the "
                   "training grows with the labeled set (default 4; 0 = exactly --steps). With --early-stopping "
                   "there is no floor unless P is given: then the P passes are split among the validation "
                   "checks.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, metavar="E",
              help="Passes over the labeled patches per round instead of --steps.")
@click.option("--early-stopping", is_flag=True,
              help="Stop each round's fine-tuning on the store's validation AUC (off: validation labels are "
                   "labels too): at most --steps steps in 5 checks, the best check kept, no pass floor unless "
                   "--round-passes is given.")
@click.option("--full-epochs", type=click.IntRange(min=1), default=None, metavar="E",
              help="At most this many epochs of full training / scratch over the whole pool (default 30).")
@click.option("--full-patience", type=click.IntRange(min=1), default=None, metavar="P",
              help="Full training stops after P epochs without a better validation AUC (default 3).")
@click.option("--full-seeds", type=click.IntRange(min=1), default=None, metavar="S",
              help="Full training runs on the first S seeds (default 3; the target is their mean).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Adam learning rate of every fine-tuning (default 5e-4).")
@click.option("--train-batch-size", type=click.IntRange(min=1), default=64, show_default=True, metavar="P",
              help="Patches per gradient step.")
@click.option("--initial", type=click.IntRange(min=0), default=None, metavar="N",
              help="At least N random labels before round 1, drawn until every class has 2 labels anyway "
                   "(default: one round's worth).")
@click.option("--target-delta", type=click.FloatRange(min=0, max=0.5), default=0.01, show_default=True,
              metavar="D", help="Savings target: mean full-training AUC − D.")
@click.option("--out", type=click.Path(), default=None, metavar="DIR",
              help="Run folder (default runs/<timestamp>-<app>).")
@click.option("--resume", is_flag=True, help="Continue the run in --out DIR (settings from its config.json).")
@click.option("--export/--no-export", default=True, show_default=True,
              help="Export each strategy's final model (SavedModel + .keras + provenance).")
@click.option("--export-every-round", is_flag=True, help="Also export the model after every round.")
@click.option("--scratch", is_flag=True, help="Also train from scratch (no pre-training) on the whole pool.")
@click.option("--cache-trunk/--no-cache-trunk", default=None,
              help="Run the frozen trunk once per patch and cache it (default: on when --trainable is top/head).")
@click.option("--distribute", default="none", show_default=True, metavar="none|mirrored|multi-worker",
              help="tf.distribute strategy for scoring and fine-tuning (multi-worker reads TF_CONFIG).")
@click.option("--stop", default=None, metavar="kappa:T:K",
              help="Evaluate a stopping rule: Cohen's kappa of consecutive models on a fixed stop set of pool "
                   "candidates >= T for K rounds (e.g. kappa:0.99:3); the report says where each strategy would "
                   "have stopped and its AUC gap to full training there.")
@click.option("--workers", default="auto", show_default=True, metavar="N|auto",
              help="Processes running the jobs (full training, strategy x seed) side by side; auto = one per CPU "
                   "core (at most 4), 1 with --distribute. Speed only: the results are the same.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@version_option("aift-sim")
@click.pass_context
def cli(ctx, **opts):
    """Simulate AIFT: compare selection strategies' annotation cost on a simulated application.

    Writes config.json, rounds.csv, summary.json, report.md, figures, models/, tb/ and state/ to
    the run folder; `--out DIR --resume` continues an interrupted run.
    """
    from click.core import ParameterSource

    explicit = {
        _SETTING[name]: value for name, value in opts.items()
        if name in _SETTING and ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)
    }
    alias = opts.pop("batch_size_alias")
    if alias is not None:
        click.echo("aift-sim: --batch-size is deprecated; use --query-size (candidates per round)", err=True)
        if opts["query_size"] is not None and opts["query_size"] != alias:
            raise click.UsageError(f"--batch-size {alias} and --query-size {opts['query_size']} disagree")
        opts["query_size"] = alias
        explicit["query_size"] = alias
    quiet = opts["quiet"]
    argv = ["aift-sim"] + list(sys.argv[1:] if ctx.obj is None else ctx.obj)

    from simulate.config import SimConfig
    from simulate.experiment import default_out_dir, run_experiment

    if opts["resume"]:
        if opts["out"] is None:
            raise click.UsageError("--resume needs --out DIR (the run to continue)")
        config = None
    else:
        if "app" in explicit and "data" in explicit:
            raise click.UsageError("give --app or --data, not both")
        settings = {k: opts[c] for c, k in _SETTING.items()}
        if opts["data"] is not None:
            settings["app"] = None
        config = SimConfig.from_dict(settings)  # validated once, by run_experiment
    out = opts["out"] if opts["out"] is not None else default_out_dir(config)
    try:
        done = run_experiment(config, out=out, resume=opts["resume"], quiet=quiet, argv=argv,
                              cache_dir=opts["cache_dir"], explicit=explicit if opts["resume"] else None,
                              workers=opts["workers"])
    except KeyboardInterrupt:
        import shlex

        from simulate.run_folder import is_run

        if is_run(out):
            click.echo(f"interrupted; continue with: aift-sim --out {shlex.quote(str(out))} --resume", err=True)
        raise
    from simulate.report import build_report

    build_report(done["out"], runtime=done["runtime"])
    if not quiet:
        from simulate.run_folder import report_path

        click.echo(f"report: {report_path(done['out'])}")
    return 0


def main(argv=None):
    """Console entry point (`aift-sim`)."""
    import os

    # TensorFlow's C++ start-up chatter (incl. harmless ERROR-level graph notices) would drown the bars
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if argv is not None:
        # record the real arguments in config.json when called from Python
        return run_cli(_with_obj(argv), argv, prog_name="aift-sim")
    run_cli(cli, None, prog_name="aift-sim")


def _with_obj(argv):
    class _Wrapped:
        def main(self, args=None, prog_name=None, standalone_mode=False):
            return cli.main(args=args, prog_name=prog_name, standalone_mode=standalone_mode, obj=list(argv))

    return _Wrapped()


if __name__ == "__main__":
    main()
