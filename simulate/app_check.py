"""How hard is a simulated application for the real library? Full training, candidate-level test AUC.

:func:`full_training_auc` opens (generating once) the cached store of an application, builds a
zoo model (from the committed offline pre-trained M0, or from scratch), fine-tunes it with the
library's own :func:`aift_tf.finetune.fine_tune` on *every* candidate of the train split
(class-balanced sampling) and scores the test candidates with
:func:`aift_tf.pipelines.predict_candidates` (candidate probability = mean over its m patches).
It is the "all labels" end point that active learning is compared against.

Command line (one line per app)::

    python -m simulate.app_check --app pulmonary-embolism --epochs 5 --weights m0
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from aift_tf.errors import AiftError

WEIGHTS = ("m0", "none")


def _store_path(app, scale, seed, cache_dir, store):
    """The store to use: ``store`` if given, else the cached one -- regenerated (atomically) when the
    app module declares a ``GENERATOR_VERSION`` that the cached file does not carry."""
    if store is not None:
        return Path(store)
    from aift_tf.store import open_store
    from simulate.apps import cached_store, generate_store, get_app

    path = Path(cached_store(app, scale=scale, seed=seed, cache_dir=cache_dir))
    want = getattr(get_app(app), "GENERATOR_VERSION", None)
    if want is not None:
        with open_store(path, check_values=False) as s:
            have = s.attrs.get("generator_version")
        if have != want:
            generate_store(app, path, scale=scale, seed=seed)
    return path


def full_training_auc(app, scale="quick", seed=0, epochs=5, weights="m0", model="small_cnn", *,
                      batch_size=64, learning_rate=1e-3, cache_dir=None, store=None, verbose=0) -> dict:
    """Fine-tune ``model`` on the whole train pool of ``app`` and return its candidate-level test AUC.

    Args:
        app: a registered app name (``simulate.apps.APP_NAMES``).
        scale, seed: which generated store (``simulate.apps.cached_store``).
        epochs: training epochs over all train patches.
        weights: ``"m0"`` (the committed offline pre-trained M0 of ``simulate.pretrain.default_m0``;
            an error if there is none for the store's patch shape) or ``None``/``"none"`` (random init).
        model: a zoo model name.
        batch_size, learning_rate: fine-tuning hyper-parameters (Adam, ``balance=True``).
        cache_dir: store cache folder (default ``aift_tf.files.default_cache_dir()``).
        store: path of an existing store to use instead of the cached app store.

    Returns:
        dict with ``app``, ``scale``, ``seed``, ``model``, ``weights``, ``epochs``, ``train_candidates``,
        ``test_candidates``, ``test_positives``, ``test_auc``, ``val_auc`` (nan without val
        candidates), ``train_auc`` (the train pool, scored after training), ``train_seconds``,
        ``seconds`` (whole call, incl. generation), ``store``.
    """
    from aift_tf.finetune import FineTuneConfig, compile_model, fine_tune, set_seeds
    from aift_tf.metrics import auc, candidate_probability
    from aift_tf.pipelines import predict_candidates
    from aift_tf.store import open_store
    from aift_tf.zoo import build_model
    from simulate import pretrain

    t0 = time.perf_counter()
    if weights in (None, "none"):
        weights = None
    elif weights != "m0":
        raise AiftError(f"weights {weights!r}: expected 'm0' or None")
    path = _store_path(app, scale, seed, cache_dir, store)
    with open_store(path) as s:
        shape = tuple(int(v) for v in s.patch_shape)
        wpath = None
        if weights == "m0":
            wpath = pretrain.default_m0(model, shape)
            if wpath is None:
                raise AiftError(f"no offline pre-trained M0 for {model} {'x'.join(map(str, shape))}")
        cfg = FineTuneConfig(epochs=int(epochs), batch_size=int(batch_size),
                             learning_rate=float(learning_rate), balance=True, seed=int(seed))
        set_seeds(int(seed), cfg.deterministic)
        net = build_model(model, input_shape=shape, num_classes=s.num_classes,
                          weights=str(wpath) if wpath else None, seed=int(seed))
        compile_model(net, cfg)
        tr, va, te = s.ids("train"), s.ids("val"), s.ids("test")
        hist = fine_tune(net, s, tr, s.labels[tr], cfg, verbose=verbose)
        test_auc = auc(s.labels[te], candidate_probability(predict_candidates(net, s, te)))
        # the train pool scored after training (same augmented patches): train - test = the gap
        train_auc = auc(s.labels[tr], candidate_probability(predict_candidates(net, s, tr)))
        val_auc = (auc(s.labels[va], candidate_probability(predict_candidates(net, s, va)))
                   if len(va) else float("nan"))
        return dict(app=app if store is None else s.app, scale=scale, seed=int(seed), model=model,
                    weights="m0" if wpath else "none", epochs=int(hist["epochs"]),
                    train_candidates=int(len(tr)), test_candidates=int(len(te)),
                    test_positives=int(s.labels[te].sum()), test_auc=float(test_auc), val_auc=float(val_auc),
                    train_auc=float(train_auc),
                    train_seconds=round(float(hist["seconds"]), 2),
                    seconds=round(time.perf_counter() - t0, 2), store=str(path))


def main(argv=None) -> int:
    from simulate.apps import APP_NAMES

    ap = argparse.ArgumentParser(prog="python -m simulate.app_check", description=__doc__.split("\n")[0])
    ap.add_argument("--app", action="append", choices=APP_NAMES,
                    help="application (repeatable; default: all)")
    ap.add_argument("--scale", default="quick", choices=("quick", "paper"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--weights", default="m0", choices=WEIGHTS)
    ap.add_argument("--model", default="small_cnn")
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args(argv)
    rc = 0
    for app in args.app or APP_NAMES:
        try:
            r = full_training_auc(app, scale=args.scale, seed=args.seed, epochs=args.epochs,
                                  weights=args.weights, model=args.model, cache_dir=args.cache_dir)
        except AiftError as e:
            print(f"{app}: error: {e}", flush=True)
            rc = 1
            continue
        print(f"{app} scale={r['scale']} seed={r['seed']} model={r['model']} weights={r['weights']} "
              f"epochs={r['epochs']} train={r['train_candidates']} test={r['test_candidates']} "
              f"(pos {r['test_positives']}) test_auc={r['test_auc']:.3f} val_auc={r['val_auc']:.3f} "
              f"train_auc={r['train_auc']:.3f} gap={r['train_auc'] - r['test_auc']:.3f} "
              f"seconds={r['seconds']:.0f}", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
