"""``aift``: real annotation rounds with human experts (a thin click layer over :mod:`aift_tf.project`).

    aift init PROJECT --data STORE.h5 [--model NAME --weights m0|none|imagenet|PATH --trainable all|top|head
                                       --strategy aift --learning ACFT-LQ --omega W --epochs E --lr LR
                                       --batch-size B --seed S]
    aift query PROJECT -n 20 [--strategy S --omega W --force]
    aift teach PROJECT round-NNN/queries.csv [--relabel]
    aift status PROJECT
    aift export PROJECT --out DIR [--force]
    aift recover PROJECT        (after an error naming a damaged checkpoint)

Every command takes ``--quiet`` (no progress bars or chatter). Bad input → ``error: ...`` on one line,
exit code 2, the project unchanged. TensorFlow is imported only when a model is built, loaded or trained.
See docs/annotation.md for a walkthrough.
"""

from __future__ import annotations

import click

from aift_tf._cli import run_cli

STRATEGY_HELP = ("selection strategy: aift (= entropy+diversity@0.25), entropy, diversity, entropy+diversity[@ALPHA], "
                 "random, least-confidence, margin, mean-entropy")


class _Bars:
    """tqdm bars for the learner's ``progress(stage, done, total)`` and a Keras fine-tuning callback."""

    NAMES = {"score": "scoring"}

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bars = {}

    def __call__(self, stage, done, total):
        if self.quiet:
            return
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None or done < bar.n:
            if bar is not None:
                bar.close()
            bar = self.bars[stage] = tqdm(total=total, desc=self.NAMES.get(stage, stage), unit="cand",
                                          leave=False, dynamic_ncols=True)
        if total is not None and bar.total != total:
            bar.total = total
        bar.update(max(0, int(done) - bar.n))
        if total is not None and done >= total:
            bar.close()
            self.bars.pop(stage, None)

    def fit_callbacks(self, round_index):
        if self.quiet:
            return []
        import keras
        from tqdm import tqdm

        class FitBar(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                steps = self.params.get("steps") or None
                epochs = self.params.get("epochs") or 1
                self.bar = tqdm(total=steps * epochs if steps else None, desc=f"fine-tuning round {round_index}",
                                unit="batch", leave=False, dynamic_ncols=True)
                self.epoch = 0

            def on_epoch_begin(self, epoch, logs=None):
                self.epoch = epoch + 1

            def on_train_batch_end(self, batch, logs=None):
                self.bar.update(1)
                if logs and "loss" in logs:
                    self.bar.set_postfix(epoch=self.epoch, loss=f"{float(logs['loss']):.4f}", refresh=False)

            def on_train_end(self, logs=None):
                self.bar.close()

        return [FitBar()]

    def close(self):
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


def _say(quiet):
    return (lambda msg: None) if quiet else (lambda msg: click.echo(msg))


def _warn(msg):
    click.echo(msg, err=True)


def _open(project, quiet):
    from aift_tf.project import Project

    bars = _Bars(quiet)
    return Project(project, progress=bars, echo=_say(quiet), fit_callbacks=bars.fit_callbacks), bars


quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars or chatter (errors still print).")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def cli():
    """Active, incremental fine-tuning with a human annotator: init → query → teach → status → export.

    A PROJECT folder holds the settings, the label ledger, the learner checkpoints and one round-NNN/ folder
    per query (queries.csv to fill in + gallery.html to look at). See docs/annotation.md.
    """


@cli.command()
@click.argument("project", type=click.Path(file_okay=False))
@click.option("--data", required=True, type=click.Path(dir_okay=False), help="Candidate store (.h5); its train split is the pool.")
@click.option("--model", default="small_cnn", show_default=True, help="Zoo model: small_cnn, alexnet, vgg16, resnet50, mobilenet_v2, efficientnet_b0, densenet121.")
@click.option("--weights", default="m0", show_default=True, help="Starting weights: m0 (the offline pre-trained M0 shipped with aift_tf, adapted to the patch shape; random init with a warning if none fits, an error if given explicitly), none, imagenet, or a .keras / .weights.h5 file.")
@click.option("--trainable", type=click.Choice(["all", "top", "head"]), default="all", show_default=True, help="Layers fine-tuned.")
@click.option("--strategy", default="aift", show_default=True, help=STRATEGY_HELP)
@click.option("--learning", default="ACFT-LQ", show_default=True, help="Learning strategy: RFT, AFT, ACFT-Q, ACFT-LQ, ACFT-HQ.")
@click.option("--omega", type=float, default=1.0, show_default=True, help="Randomisation ω >= 1 (pick b of the top ω·b).")
@click.option("--epochs", type=int, default=5, show_default=True, help="Fine-tuning epochs per teach.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Learning rate.")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Patches per gradient step.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of queries and fine-tuning.")
@quiet_option
def init(project, data, model, weights, trainable, strategy, learning, omega, epochs, lr, batch_size, seed, quiet):
    """Create PROJECT from a candidate store and save M0 (the starting model)."""
    from aift_tf.project import init_project

    bars = _Bars(quiet)
    explicit = click.get_current_context().get_parameter_source("weights") != click.core.ParameterSource.DEFAULT
    path = init_project(project, data, model=model, weights=weights, trainable=trainable, strategy=strategy,
                        learning=learning, omega=omega, epochs=epochs, learning_rate=lr, batch_size=batch_size,
                        seed=seed, progress=bars, m0_fallback=not explicit, warn=_warn)
    _say(quiet)(f"created {path}: model {model} (weights {weights}), strategy {strategy}, learning {learning}; "
                f"next: aift query {path} -n 20")


@cli.command()
@click.argument("project", type=click.Path(file_okay=False))
@click.option("-n", "n", type=int, default=20, show_default=True, help="Candidates to query.")
@click.option("--strategy", default=None, help="Override the project's selection strategy for this round. " + STRATEGY_HELP)
@click.option("--omega", type=float, default=None, help="Override the project's ω for this round.")
@click.option("--force", is_flag=True, help="Query even though the previous round is still unanswered.")
@quiet_option
def query(project, n, strategy, omega, force, quiet):
    """Score the unlabeled pool; write round-NNN/ (queries.csv + gallery.html)."""
    p, bars = _open(project, quiet)
    with p:
        info = p.query(n, strategy=strategy, omega=omega, force=force)
    bars.close()
    folder = info["path"]
    _say(quiet)(f"{folder.name}: {info['n']} candidates (of {info['pool_left']} unlabeled), strategy "
                f"{info['strategy']}, model of teach round {info['model_round']}\n"
                f"  look:  {folder / 'gallery.html'}\n"
                f"  label: {folder / 'queries.csv'} (label column: class index or name; empty = skip)\n"
                f"  then:  aift teach {project} {folder / 'queries.csv'}")


@cli.command()
@click.argument("project", type=click.Path(file_okay=False))
@click.argument("csv_file", metavar="CSV", type=click.Path())
@click.option("--relabel", is_flag=True, help="Allow changing the label of already-labeled candidates.")
@quiet_option
def teach(project, csv_file, relabel, quiet):
    """Import the labels of CSV (columns id,label) and fine-tune the model with them."""
    p, bars = _open(project, quiet)
    with p:
        res = p.teach(csv_file, relabel=relabel, warn=_warn)
    bars.close()
    say = _say(quiet)
    plan = res["plan"]
    if res["nothing_new"]:
        extra = f" ({len(plan['same'])} already labeled the same way)" if plan["same"] else ""
        say(f"nothing new in {res['csv']}{extra}")
        return
    rec = res["record"]
    ft = rec["finetune"]
    loss = ", ".join(f"{v:.4f}" for v in ft.get("loss", []))
    line = (f"teach round {res['round']}: {len(plan['new'])} new label(s)"
            + (f", {len(plan['relabel'])} relabeled" if plan["relabel"] else "")
            + (f", {len(plan['same'])} unchanged" if plan["same"] else "")
            + f"; {rec['labels']} labeled in total; fine-tuned on {rec['train_candidates']} candidates "
            f"({ft.get('epochs')} epoch(s), loss {loss}, {ft.get('seconds', 0):.1f} s)")
    if ft.get("val_auc"):
        line += f"; validation AUC {ft['val_auc'][-1]:.3f}"
    say(line)


@cli.command()
@click.argument("project", type=click.Path(file_okay=False))
@quiet_option
def status(project, quiet):
    """Rounds, labels per class, pool left, last fine-tune metrics."""
    from aift_tf.project import printable as e  # every string read back from the project is escaped

    p, bars = _open(project, quiet)
    with p:
        s = p.status()
        c = p.config
        from aift_tf.stopping import checkpoint_agreement, prediction_cache_dir  # kappa of consecutive models

        stop = checkpoint_agreement(p.store, [d for _, d in p.checkpoints()], seed=int(c.get("seed") or 0),
                                    pool_split=c.get("pool_split", "train"), cache_dir=prediction_cache_dir())
    bars.close()
    ft = c.get("finetune") if isinstance(c.get("finetune"), dict) else {}
    lines = [
        f"project {e(project)}: store {e(c['store'])} ({e(c.get('app'))}, {c['n']} candidates x {c['m']} patches)",
        f"  model {e(c.get('model'))} (weights {e(c.get('weights') or 'none')}, trainable {e(c.get('trainable'))}); "
        f"strategy {e(c.get('strategy'))} (omega {e(c.get('omega'))}); learning {e(c.get('learning'))}; "
        f"{e(ft.get('epochs'))} epoch(s), lr {e(ft.get('learning_rate'))}, batch {e(ft.get('batch_size'))}, "
        f"seed {e(c.get('seed'))}",
        f"teach rounds: {s['teach_rounds']}; query rounds: {len(s['query_rounds'])}",
    ]
    m0 = c.get("m0") if isinstance(c.get("m0"), dict) else {}
    if m0:  # which M0 the project started from (projects made before this record have none)
        where = f" {m0['weights']}" if m0.get("weights") else ""
        lines.insert(2, f"  M0: {m0.get('source')}{where} ({m0.get('summary')})")
    for q in s["query_rounds"]:
        lines.append(f"  round-{q['round']:03d}: {q['n']} queried, {q['labeled']} labeled"
                     + ("" if q["answered"] else " (unanswered)"))
    for name in s["incomplete_rounds"]:
        lines.append(f"  {e(name)}: no query.json (not written by `aift query`; left as it is)")
    per = ", ".join(f"{e(k)} {v}" for k, v in s["per_class"].items())
    lines.append(f"labels: {s['labels']} ({per})")
    lines.append(f"pool left: {s['pool_left']} of {s['pool']} unlabeled")
    if s["history"]:
        h = s["history"][-1]
        ft = h["finetune"]
        lines.append(f"last fine-tune (round {h['round']}): {ft.get('epochs')} epoch(s) on {h['train_candidates']} "
                     f"candidates, loss per epoch [{', '.join(f'{v:.4f}' for v in ft.get('loss', []))}], "
                     f"{ft.get('seconds', 0):.1f} s")
        if ft.get("val_auc"):
            lines.append(f"validation AUC: {ft['val_auc'][-1]:.3f}")
        else:
            lines.append("validation AUC: n/a (the store's val split has no labels of both classes)")
    else:
        lines.append("last fine-tune: none yet (M0)")
    lines.append(stop["line"])
    click.echo("\n".join(lines))


@cli.command()
@click.argument("project", type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(), help="Export folder (SavedModel + model.keras + provenance.json).")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@quiet_option
def export(project, out, force, quiet):
    """Export the current model for serving (SavedModel + .keras + provenance.json)."""
    p, bars = _open(project, quiet)
    with p:
        path = p.export(out, force=force)
        r = p.state()["round"]
    bars.close()
    _say(quiet)(f"exported the model of teach round {r} to {path} (saved_model/, model.keras, provenance.json)")


@cli.command()
@click.argument("project", type=click.Path(file_okay=False))
@quiet_option
def recover(project, quiet):
    """Set a damaged newest checkpoint aside and re-train its labels from the ledger on the previous one.

    The damaged folder is renamed checkpoints/round-TTT.damaged (not deleted); if M0 itself is damaged it
    is rebuilt from config.json. The ledger is never changed, so no label is lost.
    """
    p, bars = _open(project, quiet)
    with p:
        res = p.repair()
    bars.close()
    if not res["set_aside"] and not res["rebuilt_m0"] and not res["records"]:
        _say(quiet)(f"nothing to recover: the newest checkpoint of {project} loads and matches the ledger")
        return
    _say(quiet)(f"recovered {project}: {len(res['set_aside'])} damaged checkpoint(s) set aside"
                + ("; M0 rebuilt from config.json" if res["rebuilt_m0"] else "")
                + f"; {len(res['records'])} round(s) re-trained from the ledger; the model is at teach round "
                  f"{res['round']}")


def main(argv=None):
    import warnings

    # Keras chatter that means nothing to an annotator (M0's optimizer has no slots yet; tf.data is shuffled).
    warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
    warnings.filterwarnings("ignore", message=".*shuffle=True. was passed")
    # M0's source-task head never fits the store's classes: a new head is expected, not news.
    warnings.filterwarnings("ignore", message=r".*1 layer\(s\) of .* skipped \(shape mismatch\): head_dense$")
    run_cli(cli, argv, prog_name="aift")


if __name__ == "__main__":
    main()
