"""``aift score``: sharded scoring of a pool too big for one node (registered in :mod:`aift_tf.cli`).

    aift score STORE.h5 --model PATH --shard i/N [--hash] --out part-i.h5 [--distribute mirrored]
    aift score --merge part-*.h5 --out scores.h5 [--strategy aift]

See :mod:`aift_tf.scoring` and docs/distributed.md.
"""

from __future__ import annotations

import click

from aift_tf.errors import AiftError
from aift_tf.progress import Progress


@click.command("score")
@click.argument("inputs", nargs=-1, required=True, metavar="STORE.h5 | PART.h5...")
@click.option("--model", "model", type=click.Path(), help="A .keras model or a saved learner folder "
              "(then its labeled candidates are left out of the pool).")
@click.option("--shard", default="0/1", show_default=True, help="This process's share i/N of the pool (i from 0); "
              "'tf-config' takes i and N from TF_CONFIG (task index, number of workers).")
@click.option("--hash", "hashed", is_flag=True, help="Hashed shares (id hash mod N) instead of contiguous blocks.")
@click.option("--split", default="train", show_default=True, help="Pool split when --model is a .keras file.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True, help="Patches per forward pass.")
@click.option("--distribute", type=click.Choice(["none", "mirrored"]), default="none", show_default=True,
              help="Split each batch over this node's devices.")
@click.option("--merge", is_flag=True, help="Merge the part files given as inputs into one scores file.")
@click.option("--strategy", default="aift", show_default=True, help="Worth written by --merge (aift_tf.selection).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="File to write (HDF5, atomically).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or chatter (errors still print).")
def score(inputs, model, shard, hashed, split, batch_size, distribute, merge, strategy, out, quiet):
    """Score a share of the pool (STORE.h5 --model --shard i/N) or merge part files (--merge PART.h5...)."""
    from aift_tf import scoring

    say = (lambda msg: None) if quiet else click.echo
    if merge:
        path = scoring.merge_shards(inputs, out, strategy=strategy)
        s = scoring.read_scores(path)
        say(f"merged {len(inputs)} part(s): {s.ids.size} candidates, worth ({strategy}) -> {path}")
        return
    if len(inputs) != 1:
        raise AiftError(f"scoring takes one STORE.h5, got {len(inputs)} inputs (merge part files with --merge)")
    if model is None:
        raise AiftError("scoring needs --model (a .keras file or a saved learner folder)")
    if shard.strip().lower() == "tf-config":
        from aift_tf.distribute import worker_role

        index, workers = worker_role()
        shard = f"{index}/{len(workers)}"
    with Progress(quiet) as bars:
        path = scoring.score_shard(inputs[0], model, out, shard=shard, mode="hash" if hashed else "contiguous",
                                   split=split, batch_size=batch_size, distribute=distribute,
                                   progress=bars.counter(f"scoring shard {shard}", unit="cand"))
    s = scoring.read_scores(path)
    say(f"shard {shard}: scored {s.ids.size} of {s.pool_ids.size} pool candidates -> {path}")
