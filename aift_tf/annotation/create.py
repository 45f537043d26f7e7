"""``aift init``: a new project folder (config.json, an empty ledger, the lock file and M0 in
checkpoints/round-000), and the config.json schema it writes (checked back by
:func:`aift_tf.annotation.records.check_project_config`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from aift_tf.annotation import layout
from aift_tf.annotation.checks import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_LEARNING_RATE, MAX_SEED, printable
from aift_tf.annotation.layout import CHECKPOINTS, CONFIG, LEDGER, LOCK, project_above
from aift_tf.annotation.records import now
from aift_tf.checks import check_choice, check_number
from aift_tf.errors import AiftError
from aift_tf.files import atomic_dir, write_json_atomic, write_text_atomic
from aift_tf.zoo.pretrained import M0_CHOICES, parse_weights

#: config.json's "format" written by this version
PROJECT_FORMAT = 1


def check_parent_folder(path: Path, what: str) -> None:
    """One line if ``path``'s parent is missing or not a folder (a path under a regular file)."""
    parent = path.parent
    if not parent.exists():
        raise AiftError(f"{path}: parent folder {parent} does not exist (create it first, or choose another "
                        f"place for {what})")
    if not parent.is_dir():
        raise AiftError(f"{path}: {parent} is not a folder (choose another place for {what})")


def init_project(path, data, *, model="small_cnn", weights="m0", trainable="all", strategy="aift",
                 learning="ACFT-LQ", omega=1.0, epochs=5, learning_rate=1e-3, batch_size=64, seed=0,
                 progress: Optional[Callable] = None, m0_fallback: bool = True,
                 warn: Optional[Callable] = None, m0: str = "offline", cache_dir=None) -> Path:
    """Create PROJECT with config.json, checkpoints/round-000 (M0) and an empty ledger.

    ``weights="m0"``: the offline pre-trained M0 shipped with aift_tf that fits the store's patch shape
    (``aift_tf.zoo.pretrained.resolve_m0``); if none fits, ``m0_fallback`` starts from random
    initialisation and calls ``warn`` (default ``warnings.warn``) with a loud one-line warning, else raises.
    config.json records the resolved ``weights`` and an ``m0`` record (source, path, sha256, card summary).

    ``m0="self-supervised"``: M0 is instead pre-trained without labels on the store's own pool (SimCLR over each
    candidate's patches, :func:`aift_tf.ssl.self_supervised_m0`; once per store and model, cached in
    ``cache_dir/m0``, default ``$AIFT_CACHE``); ``weights`` must then be left at ``"m0"``.
    """
    from aift_tf.finetune import FineTuneConfig, check_learning
    from aift_tf.selection import parse_strategy
    from aift_tf.store import open_store
    from aift_tf.zoo import MODEL_NAMES, POLICIES

    from aift_tf.checks import check_int as check_integer

    path = Path(path)
    if path.exists() or path.is_symlink():
        raise AiftError(f"{path}: already exists (choose a new project folder)")
    check_parent_folder(path, "the project folder")
    inside = project_above(path.parent.resolve())
    if inside is not None:  # a project in a project: its folder would read as the outer one's round or checkpoint
        raise AiftError(f"{path}: lies inside the project {printable(inside)}; choose a folder outside it")
    epochs = check_integer(epochs, "epochs", 1, MAX_EPOCHS, coerce=True)
    batch_size = check_integer(batch_size, "batch_size", 1, MAX_BATCH_SIZE, coerce=True)
    seed = check_integer(seed, "seed", 0, MAX_SEED, coerce=True)
    learning_rate = check_number(learning_rate, "learning_rate", 0, MAX_LEARNING_RATE, low_open=True, coerce=True)
    check_choice(model, "model", MODEL_NAMES)
    check_choice(trainable, "trainable", POLICIES)
    parse_strategy(strategy)
    learning = check_learning(learning)
    omega = check_number(omega, "omega", low=1, coerce=True)
    m0 = check_choice("offline" if m0 is None else m0, "m0", M0_CHOICES)
    if m0 == "self-supervised" and weights != "m0":
        raise AiftError(f"weights must be 'm0' with m0='self-supervised' (the pre-trained weights are the "
                        f"self-supervised M0); got {weights!r}")
    weights = parse_weights(weights)
    ft = FineTuneConfig(epochs=int(epochs), batch_size=int(batch_size), learning_rate=float(learning_rate),
                        seed=int(seed))
    data = Path(data).expanduser()
    with open_store(data) as store:
        pool = store.ids("train")
        if pool.size == 0:
            raise AiftError(f"{data}: the 'train' split (the pool to annotate) is empty")
        m0_choice = m0
        if m0_choice == "self-supervised":
            from aift_tf.ssl import self_supervised_m0

            weights, m0 = self_supervised_m0(store, model, cache_dir=cache_dir, seed=int(seed),
                                             progress=progress is not None)
        else:
            from aift_tf.zoo.pretrained import resolve_m0

            weights, m0 = resolve_m0(weights, model, store.patch_shape, fallback=m0_fallback)
        if m0.get("warning"):
            import warnings

            (warn or warnings.warn)(m0["warning"])
        config = {
            "format": PROJECT_FORMAT,
            "created": now(),
            "store": str(data.resolve()),
            "store_sha256": store.sha256,
            "app": store.app,
            "class_names": list(store.class_names),
            "n": int(store.n),
            "m": int(store.m),
            "patch_shape": list(store.patch_shape),
            "pool_split": "train",
            "val_split": "val",
            "model": model,
            "weights": weights,
            "m0": m0,
            "trainable": trainable,
            "strategy": strategy,
            "learning": learning,
            "omega": float(omega),
            "seed": int(seed),
            "finetune": ft.to_dict(),
        }
        from aift_tf.learner import ActiveLearner

        learner = ActiveLearner(store, model_name=model, weights=weights, trainable=trainable, strategy=strategy,
                                learning=learning, omega=float(omega), finetune=ft, seed=int(seed),
                                pool_split="train", val_split="val", progress=progress)
        # replace=False: the final rename refuses to replace a folder that appeared meanwhile (a concurrent
        # `aift init` of the same path): the first one to finish keeps the project, the other exits 2.
        with atomic_dir(path, replace=False) as tmp:
            write_json_atomic(tmp / CONFIG, config)
            write_text_atomic(tmp / LEDGER, "")
            write_text_atomic(tmp / LOCK, "")
            (tmp / CHECKPOINTS).mkdir()
            learner.save(layout.checkpoint_folder(tmp, 0))
    return path
