"""``aift``: real annotation rounds with human experts (a thin click layer over :mod:`aift_tf.annotation.project`).

    aift init PROJECT --data STORE.h5 [--model NAME --weights m0|none|imagenet|PATH --m0 offline|self-supervised
                                       --trainable all|top|head
                                       --strategy aift --learning ACFT-LQ --omega W --epochs E --lr LR
                                       --batch-size B --seed S]
    aift query PROJECT --query-size/-n 20 [--strategy S --omega W --force --annotators A,B --overlap 0.2]
    aift teach PROJECT CSV [--relabel --annotator NAME]   (CSV: queries.csv or the page's download)
    aift adjudicate PROJECT     (list disagreements between annotators to settle)
    aift status PROJECT
    aift export PROJECT --out DIR [--force]   (--force replaces an earlier export, nothing else)
    aift recover PROJECT        (after an error naming a damaged checkpoint)

Every command takes ``--quiet`` (no progress bars or chatter). Bad input → ``error: ...`` on one line,
exit code 2, the project unchanged. TensorFlow is imported only when a model is built, loaded or trained.
See docs/annotation.md for a walkthrough.
"""

from __future__ import annotations

import click

from aift_tf.cli_support import run_cli, version_option
from aift_tf.annotation import layout
from aift_tf.annotation.checks import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_LEARNING_RATE, MAX_SEED, quoted
from aift_tf.export import KERAS_FILE, PROVENANCE, SAVED_MODEL  # the export folder's names (no TensorFlow)
from aift_tf.files import round_name
from aift_tf.finetune import LEARNING_STRATEGIES  # TensorFlow-free imports: `--help` stays instant
from aift_tf.progress import Progress
from aift_tf.zoo import MODEL_NAMES, POLICIES
from aift_tf.zoo.pretrained import M0_CHOICES

STRATEGY_HELP = ("selection strategy: aift (= entropy+diversity@0.25), entropy, diversity, entropy+diversity[@ALPHA], "
                 "random, least-confidence, margin, mean-entropy")


STAGE_NAMES = {"score": "scoring"}


def _fit_callbacks(bars, round_index) -> list:
    """The Keras callbacks of teach round ``round_index``: a fine-tuning bar (none when quiet)."""
    cb = bars.fit_callback(f"fine-tuning round {round_index}")
    return [] if cb is None else [cb]


def _say(quiet):
    return (lambda msg: None) if quiet else (lambda msg: click.echo(msg))


def _warn(msg):
    click.echo(msg, err=True)


def _open(project, quiet, read_only=False):
    from aift_tf.annotation.project import Project

    bars = Progress(quiet)
    return Project(project, progress=bars.stage(names=STAGE_NAMES), echo=_say(quiet),
                   fit_callbacks=lambda r: _fit_callbacks(bars, r), read_only=read_only), bars


quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars or chatter (errors still print).")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@version_option("aift")
def cli():
    """Active, incremental fine-tuning with human annotators: init → query → teach → status → export.

    A PROJECT folder holds the settings, the label ledger, the learner checkpoints and one round-NNN/ folder
    per query (gallery.html to label in the browser, or queries.csv to fill in). See docs/annotation.md.
    """


@cli.command()
@click.argument("project", type=click.Path(file_okay=False))
@click.option("--data", required=True, type=click.Path(dir_okay=False), help="Candidate store (.h5); its train split is the pool.")
@click.option("--model", type=click.Choice(MODEL_NAMES), default="small_cnn", show_default=True, help="Zoo model.")
@click.option("--weights", default="m0", show_default=True, metavar="none|imagenet|m0|PATH", help="Starting weights: m0 (the offline pre-trained M0 shipped with aift_tf, adapted to the patch shape; random init with a warning if none fits, an error if given explicitly), none, imagenet, or a .keras / .weights.h5 file.")
@click.option("--m0", "m0", type=click.Choice(M0_CHOICES), default="offline", show_default=True,
              help="Where M0 comes from: offline (--weights decides) or self-supervised (SimCLR over each candidate's "
                   "patches on this store's own pool, labels never read; once per store, cached in $AIFT_CACHE/m0; "
                   "a few minutes on a CPU).")
@click.option("--trainable", type=click.Choice(POLICIES), default="all", show_default=True, help="Layers fine-tuned.")
@click.option("--strategy", default="aift", show_default=True, help=STRATEGY_HELP)
@click.option("--learning", type=click.Choice(LEARNING_STRATEGIES), default="ACFT-LQ",
              show_default=True, help="Learning strategy: how each teach fine-tunes (journal Table 2).")
@click.option("--omega", type=click.FloatRange(min=1), default=1.0, show_default=True, help="Randomisation ω >= 1 (pick b of the top ω·b).")
@click.option("--epochs", type=click.IntRange(1, MAX_EPOCHS), default=5, show_default=True,
              help=f"Fine-tuning epochs per teach (1..{MAX_EPOCHS}).")
@click.option("--lr", type=click.FloatRange(0, MAX_LEARNING_RATE, min_open=True), default=1e-3, show_default=True,
              help=f"Learning rate (> 0 and <= {MAX_LEARNING_RATE:g}).")
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH_SIZE), default=64, show_default=True,
              help=f"Patches per gradient step (1..{MAX_BATCH_SIZE}).")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
              help=f"Seed of queries and fine-tuning (0..{MAX_SEED}).")
@quiet_option
def init(project, data, model, weights, m0, trainable, strategy, learning, omega, epochs, lr, batch_size, seed, quiet):
    """Create PROJECT from a candidate store and save M0 (the starting model)."""
    from aift_tf.annotation.create import init_project

    bars = Progress(quiet)
    explicit = click.get_current_context().get_parameter_source("weights") != click.core.ParameterSource.DEFAULT
    path = init_project(project, data, model=model, weights=weights, trainable=trainable, strategy=strategy,
                        learning=learning, omega=omega, epochs=epochs, learning_rate=lr, batch_size=batch_size,
                        seed=seed, progress=bars.stage(names=STAGE_NAMES), m0_fallback=not explicit, warn=_warn,
                        m0=m0)
    start = "self-supervised M0" if m0 == "self-supervised" else f"weights {weights}"
    _say(quiet)(f"created {path}: model {model} ({start}), strategy {strategy}, learning {learning}; "
                f"next: aift query {quoted(path)} -n 20")


@cli.command()
@click.argument("project", type=click.Path(file_okay=False))
@click.option("--query-size", "-n", "n", type=click.IntRange(min=1), default=20, show_default=True,
              help="Candidates to query this round.")
@click.option("--strategy", default=None, help="Override the project's selection strategy for this round. " + STRATEGY_HELP)
@click.option("--omega", type=click.FloatRange(min=1), default=None, help="Override the project's ω for this round.")
@click.option("--annotators", default=None, metavar="A,B,...",
              help=f"Several annotators: one {layout.queries_name('NAME')} + {layout.gallery_name('NAME')} each, candidates "
                   f"dealt out in rank order.")
@click.option("--overlap", type=click.FloatRange(0, 1), default=None,
              help="With --annotators: the fraction of -n every annotator labels (agreement, kappa).  [default: 0.2]")
@click.option("--force", is_flag=True, help="Query even though the previous round is still unanswered.")
@quiet_option
def query(project, n, strategy, omega, annotators, overlap, force, quiet):
    """Score the unlabeled pool; write round-NNN/ (labeling page gallery.html + queries.csv)."""
    p, bars = _open(project, quiet)
    with p:
        info = p.query(n, strategy=strategy, omega=omega, force=force, annotators=annotators, overlap=overlap)
    bars.close()
    folder = info["path"]
    say = _say(quiet)
    say(f"{folder.name}: {info['n']} candidates (of {info['pool_left']} unlabeled), strategy "
        f"{info['strategy']}, model of teach round {info['model_round']}")
    shares = info.get("annotators") or {None: info["ids"]}
    for name, ids in shares.items():
        say(f"  {name + ': ' if name else ''}label {len(ids)} in {folder / layout.gallery_name(name)} "
            f"(Download labels → {layout.download_name(folder.name, name)}), or fill "
            f"{folder / layout.queries_name(name)}")
    if info.get("shared"):
        say(f"  {len(info['shared'])} candidate(s) shared by every annotator (agreement)")
    say(f"  then:  aift teach {quoted(project)} CSV")


@cli.command()
@click.argument("project", type=click.Path(file_okay=False))
@click.argument("csv_file", metavar="CSV", type=click.Path())
@click.option("--relabel", is_flag=True, help="Allow changing the label of already-labeled candidates.")
@click.option("--annotator", default=None, metavar="NAME",
              help=f"Who labeled CSV (recorded per ledger entry; default: the CSV's annotator column or "
                   f"{layout.queries_name('NAME')}).")
@quiet_option
def teach(project, csv_file, relabel, annotator, quiet):
    """Import the labels of CSV (columns id,label[,note,annotator]) and fine-tune the model with them."""
    from aift_tf.annotation.ledger import class_list

    p, bars = _open(project, quiet)
    with p:
        res = p.teach(csv_file, relabel=relabel, annotator=annotator, warn=_warn)
        names = p.class_names
    bars.close()
    say = _say(quiet)
    plan = res["plan"]
    if res["nothing_new"]:
        extra = f" ({len(plan['same'])} already labeled the same way)" if plan["same"] else ""
        say(f"nothing new in {res['csv']}{extra}")
        return
    n_new = len(plan["new"]) - len(plan["relabel"])
    what = ("adjudication(s)" if plan["kind"] == "adjudication" else "new label(s)")
    counts = (f"{n_new} {what}" + (f", {len(plan['relabel'])} relabeled" if plan["relabel"] else "")
              + (f", {len(plan['same'])} unchanged" if plan["same"] else ""))
    if res["held"]:
        _warn(f"warning: {len(res['held'])} label(s) disagree with another annotator (ids "
              f"{', '.join(map(str, res['held'][:10]))}{' …' if len(res['held']) > 10 else ''}): held out of "
              f"training until `aift adjudicate {quoted(project)}` lists them and the adjudication is taught")
    if not res["trained"]:
        if res["missing"]:
            missing = class_list(res["missing"], names)
            say(f"recorded {counts} in the ledger; no fine-tuning until every class has a label: {missing} "
                f"{'has' if len(res['missing']) == 1 else 'have'} none yet. The next `aift query {quoted(project)}` "
                f"still ranks with the model of teach round {res['round']}; a random round (`aift query "
                f"{quoted(project)} -n 20 "
                f"--strategy random`) finds candidates of every class, and the first teach after which every class "
                f"has a label fine-tunes on all of them")
        else:
            say(f"recorded {counts} in the ledger; nothing new to fine-tune on (the new labels are held out)")
        return
    rec = res["record"]
    ft = rec["finetune"]
    loss = ", ".join(f"{v:.4f}" for v in ft.get("loss", []))
    line = (f"teach round {res['round']}: {counts}"
            + f"; {rec['labels']} labeled in total; fine-tuned on {rec['train_candidates']} candidates "
            f"({ft.get('epochs')} epoch(s), loss {loss}, {ft.get('seconds', 0):.1f} s)")
    if ft.get("val_auc"):
        line += f"; validation AUC {ft['val_auc'][-1]:.3f}"
    say(line)


@cli.command()
@click.argument("project", type=click.Path(file_okay=False))
@quiet_option
def adjudicate(project, quiet):
    """List the candidates annotators disagree on: adjudication-NNN/ (queries.csv + labeling page) to settle."""
    from aift_tf.annotation.checks import printable as e

    p, bars = _open(project, quiet)
    with p:
        res = p.adjudicate()
        names = p.class_names
    bars.close()
    if not res["ids"]:
        click.echo(f"no disagreements in {e(project)}: nothing to adjudicate")
        return
    folder = res["path"]
    lines = [f"{len(res['ids'])} disagreement(s)" + (f", already listed in {folder.name} (not answered yet)"
                                                     if res["existing"] else f" listed in {folder.name}") + ":"]
    for i in res["ids"]:
        votes = ", ".join(f"{e(a)}={e(names[lab])}" for a, lab in res["votes"][str(i)].items())
        lines.append(f"  id {i}: {votes}")
    lines.append(f"  decide in {folder / layout.GALLERY} (Download labels → {layout.download_name(folder.name)}) "
                 f"or fill {folder / layout.QUERIES}; then: aift teach {quoted(project)} CSV")
    click.echo("\n".join(lines))


@cli.command()
@click.argument("project", type=click.Path(file_okay=False))
@quiet_option
def status(project, quiet):
    """Rounds, labels per class and per annotator, agreement (kappa), pool left, last fine-tune metrics."""
    from aift_tf.annotation.ledger import class_list
    from aift_tf.annotation.checks import printable as e  # every string read back from the project is escaped

    p, bars = _open(project, quiet, read_only=True)  # answers even where the project cannot be locked
    with p:
        s = p.status()
        c = p.config
        names = p.class_names
        from aift_tf.stopping import checkpoint_agreement  # kappa of consecutive models (predictions cached)

        try:  # status only reads: nothing cached, and a damaged checkpoint leaves the rest of the report intact
            stop = checkpoint_agreement(p.store, [d for _, d in p.checkpoints()], seed=int(c.get("seed") or 0),
                                        pool_split=c.get("pool_split", "train"), cache_dir=None)
        except Exception as err:  # noqa: BLE001 - reported as one line, never a traceback
            stop = {"line": f"stopping: agreement of consecutive models unavailable ({type(err).__name__})"}
    bars.close()
    ft = c.get("finetune") if isinstance(c.get("finetune"), dict) else {}
    lines = [
        f"project {e(project)}: store {e(c['store'])} ({e(c.get('app'))}, {c['n']} candidates x {c['m']} patches)",
        f"  model {e(c.get('model'))} (weights {e(c.get('weights') or 'none')}, trainable {e(c.get('trainable'))}); "
        f"strategy {e(c.get('strategy'))} (omega {e(c.get('omega'))}); learning {e(c.get('learning'))}; "
        f"{e(ft.get('epochs'))} epoch(s), lr {e(ft.get('learning_rate'))}, batch {e(ft.get('batch_size'))}, "
        f"seed {e(c.get('seed'))}",
        f"teach rounds: {'?' if s['teach_rounds'] is None else s['teach_rounds']}; "
        f"query rounds: {len(s['query_rounds'])}",
    ]
    if s.get("damaged"):
        lines.append(f"  checkpoint: {s['damaged']}")
    m0 = c.get("m0") if isinstance(c.get("m0"), dict) else {}
    if m0:  # which M0 the project started from (projects made before this record have none)
        where = f" {e(m0['weights'])}" if m0.get("weights") else ""
        lines.insert(2, f"  M0: {e(m0.get('source'))}{where} ({e(m0.get('summary'))})")
    for q in s["query_rounds"]:
        who = f" ({', '.join(map(e, q['annotators']))}; {q['shared']} shared)" if q["annotators"] else ""
        lines.append(f"  {round_name(q['round'])}: {q['n']} queried, {q['labeled']} labeled"
                     + ("" if q["answered"] else " (unanswered)") + who)
    for name in s["incomplete_rounds"]:
        lines.append(f"  {e(name)}: no {layout.QUERY_INFO} (not written by `aift query`; left as it is)")
    per = ", ".join(f"{e(k)} {v}" for k, v in s["per_class"].items())
    lines.append(f"labels: {s['labels']} ({per})")
    for r in s["pending_rounds"]:
        lines.append(f"  teach round {r} is in the ledger but not in the model yet: the next query, teach or "
                     f"export fine-tunes it")
    if s["not_trained"]:
        why = (f"no fine-tuning until every class has a label: {class_list(s['missing'], names)} "
               f"{'has' if len(s['missing']) == 1 else 'have'} none yet" if s["missing"]
               else "the next teach fine-tunes them")
        lines.append(f"  {len(s['not_trained'])} label(s) recorded but not trained yet ({why})")
    if s["disagreements"]:
        ids = list(s["disagreements"])
        lines.append(f"disagreements: {len(ids)} (ids {', '.join(map(str, ids[:10]))}{' …' if len(ids) > 10 else ''}) "
                     f"held out of training; run `aift adjudicate {quoted(project)}`")
    if s["annotators"]:
        lines.append("annotators: " + "; ".join(
            f"{e(a)} {v['labels']} ({', '.join(f'{e(k)} {n}' for k, n in v['per_class'].items())})"
            for a, v in s["annotators"].items())
            + (f"; adjudicated {s['adjudicated']}" if s["adjudicated"] else ""))
    for g in s["agreement"]:
        a, b = g["pair"]
        kappa = "n/a" if g["kappa"] is None else f"{g['kappa']:.2f}"
        lines.append(f"agreement {e(a)} / {e(b)}: Cohen's kappa {kappa} on {g['n']} shared candidate(s), "
                     f"{g['agree']} agree")
    lines.append(f"pool left: {s['pool_left']} of {s['pool']} unlabeled")
    if s["history"]:
        h = s["history"][-1]
        ft = h.get("finetune", {})
        lines.append(f"last fine-tune (round {h['round']}): {ft.get('epochs')} epoch(s) on {h.get('train_candidates')} "
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
@click.option("--out", required=True, type=click.Path(),
              help=f"Export folder (SavedModel + {KERAS_FILE} + {PROVENANCE}).")
@click.option("--force", is_flag=True,
              help="Replace --out if it is an earlier export (only that: any other existing path is refused).")
@quiet_option
def export(project, out, force, quiet):
    """Export the current model for serving (SavedModel + .keras + provenance.json)."""
    p, bars = _open(project, quiet)
    with p:
        path = p.export(out, force=force)
        r = p.state()["round"]
    bars.close()
    _say(quiet)(f"exported the model of teach round {r} to {path} "
                f"({SAVED_MODEL}/, {KERAS_FILE}, {PROVENANCE})")


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
        _say(quiet)(f"nothing to recover: the newest checkpoint of {quoted(project)} loads and matches the ledger")
        return
    _say(quiet)(f"recovered {project}: {len(res['set_aside'])} damaged checkpoint(s) set aside"
                + (f"; M0 rebuilt from {layout.CONFIG}" if res["rebuilt_m0"] else "")
                + f"; {len(res['records'])} round(s) re-trained from the ledger; the model is at teach round "
                  f"{res['round']}")


from aift_tf.score_cli import score as _score  # noqa: E402  (sharded scoring, issue 15)

cli.add_command(_score)


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
