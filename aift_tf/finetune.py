"""One fine-tuning routine for every learning strategy of the journal's Table 2.

Learning strategies (Zhou et al., MedIA 2021, Table 2):

| name      | queries | starts from | trains on                                             |
|-----------|---------|-------------|-------------------------------------------------------|
| `RFT`     | random  | M0          | all labeled candidates                                |
| `AFT`     | active  | M0          | all labeled candidates                                |
| `ACFT-Q`  | active  | M_{t-1}     | the new queries only                                  |
| `ACFT-LQ` | active  | M_{t-1}     | all labeled candidates (the CVPR AIFT)                |
| `ACFT-HQ` | active  | M_{t-1}     | the new queries + labeled candidates M_{t-1} gets wrong |

:func:`learning_plan` turns a strategy into (training ids, restart-from-M0?); :func:`fine_tune` runs the
training itself with `model.fit` (so it works unchanged inside a `tf.distribute` strategy scope).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Optional

import numpy as np

from aift_tf.errors import AiftError, check_known_fields

LEARNING_STRATEGIES = ("RFT", "AFT", "ACFT-Q", "ACFT-LQ", "ACFT-HQ")
OPTIMIZERS = ("adam", "sgd", "rmsprop")
MONITORS = {"val_auc": "max", "val_loss": "min"}


def check_learning(name: str) -> str:
    """Return the canonical learning-strategy name or raise a one-line error."""
    canon = {s.lower(): s for s in LEARNING_STRATEGIES}
    key = str(name).strip().lower().replace("_", "-")
    if key not in canon:
        from aift_tf.checks import invalid

        raise invalid("learning", f"one of {', '.join(LEARNING_STRATEGIES)}", name)
    return canon[key]


@dataclasses.dataclass
class FineTuneConfig:
    """Hyper-parameters of one fine-tuning pass.

    Keras's transfer-learning recipe for continual fine-tuning: few steps at a low rate (see
    ``steps_per_epoch``), BatchNorm layers in inference mode (:func:`aift_tf.zoo.set_trainable`).

    Args:
        epochs: passes over the training candidates' patches per round (or, with
            ``steps_per_epoch``, epochs of that many steps).
        steps_per_epoch: gradient steps per epoch over the (repeated) labeled patches; ``None`` = one
            pass. Alone, a fixed number of steps per round keeps a round's cost the same however large
            the labeled set has grown (and so trains a large labeled set too little: see ``min_passes``).
        min_passes: with ``steps_per_epoch``, each epoch takes at least this many passes over the
            training patches: ``max(steps_per_epoch, ceil(min_passes * patches / batch_size))`` steps,
            so a round's training grows with the labeled set once one pass exceeds the floor
            (``None`` = exactly ``steps_per_epoch``). With a fixed step count a learner that has
            labeled the whole pool stays below full training: its curve measures compute, not labels.
        batch_size: patches per gradient step.
        learning_rate: optimizer learning rate.
        optimizer: `"adam"`, `"sgd"` (with `momentum`) or `"rmsprop"`.
        momentum: SGD momentum.
        patience: early stopping on the validation candidates (``keras.callbacks.EarlyStopping`` on
            ``monitor``, epochs without improvement); `None` disables it. The best epoch's weights
            are restored.
        monitor: ``"val_auc"`` (candidate AUC, higher is better) or ``"val_loss"`` (candidate-level
            cross-entropy, lower is better; keeps improving after a small validation split's AUC
            saturates at 1.0).
        augment: on-the-fly augmentation of training patches.
        balance: class-balanced sampling of training patches (PE has about 1 positive in 9).
        mixed_precision: use `mixed_float16` (GPU only; applied when the model is built).
        deterministic: enable TensorFlow op determinism (repeatable runs, some GPU cost).
        seed: base seed; round `t` trains with seed `seed + 1000 * t`.

    Example:
    >>> cfg = FineTuneConfig(epochs=3, learning_rate=1e-3)
    >>> FineTuneConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> FineTuneConfig(epochs=1, steps_per_epoch=80, min_passes=2, batch_size=64).steps_for(8 * 1074)
    269
    """

    epochs: int = 5
    steps_per_epoch: Optional[int] = None
    min_passes: Optional[float] = None
    batch_size: int = 64
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    patience: Optional[int] = None
    monitor: str = "val_auc"
    augment: bool = False
    balance: bool = True
    mixed_precision: bool = False
    deterministic: bool = True
    seed: int = 0

    def __post_init__(self):
        if int(self.epochs) < 1:
            raise AiftError(f"epochs must be >= 1, got {self.epochs!r}")
        if self.steps_per_epoch is not None and int(self.steps_per_epoch) < 1:
            raise AiftError(f"steps_per_epoch must be >= 1 or None, got {self.steps_per_epoch!r}")
        if self.min_passes is not None:
            mp = float(self.min_passes)
            if not np.isfinite(mp) or mp <= 0:
                raise AiftError(f"min_passes must be a positive number or None, got {self.min_passes!r}")
        if int(self.batch_size) < 1:
            raise AiftError(f"batch size must be >= 1, got {self.batch_size!r}")
        lr = float(self.learning_rate)
        if not np.isfinite(lr) or lr <= 0:
            raise AiftError(f"learning rate must be a positive number, got {self.learning_rate!r}")
        if self.optimizer not in OPTIMIZERS:
            raise AiftError(f"unknown optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        from aift_tf.checks import check_choice

        check_choice(self.monitor, "monitor", MONITORS)
        if self.patience is not None and int(self.patience) < 1:
            raise AiftError(f"patience must be >= 1 or None, got {self.patience!r}")

    def steps_for(self, patches: int) -> Optional[int]:
        """Gradient steps per epoch when training on ``patches`` patches (None = one pass, no repeat).

        ``steps_per_epoch``, raised to ``ceil(min_passes * patches / batch_size)`` when that is larger.

        Args:
            patches: training patches of the round (candidates x patches per candidate).
        """
        if self.steps_per_epoch is None:
            return None
        steps = int(self.steps_per_epoch)
        if self.min_passes is not None:
            steps = max(steps, int(np.ceil(float(self.min_passes) * int(patches) / int(self.batch_size))))
        return steps

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FineTuneConfig":
        check_known_fields(cls, d, "fine-tuning option")
        return cls(**d)


def learning_plan(strategy: str, new_ids, labeled_ids, misclassified_ids=None):
    """Which candidates to train on this round, and whether to restart from M0.

    Args:
        strategy: one of `LEARNING_STRATEGIES`.
        new_ids: candidates labeled this round.
        labeled_ids: all labeled candidates (including `new_ids`).
        misclassified_ids: labeled candidates (before this round) that M_{t-1} gets wrong; needed
            by `ACFT-HQ` only.

    Returns:
        `(train_ids, restart)`: int64 array and bool (`True` = fine-tune from M0).

    Example:
    >>> ids, restart = learning_plan("ACFT-Q", [5, 6], [1, 2, 5, 6])
    >>> ids.tolist(), restart
    ([5, 6], False)
    """
    strategy = check_learning(strategy)
    new_ids = np.asarray(new_ids, dtype=np.int64)
    labeled_ids = np.asarray(labeled_ids, dtype=np.int64)
    if strategy in ("RFT", "AFT"):
        return labeled_ids, True
    if strategy == "ACFT-Q":
        return new_ids, False
    if strategy == "ACFT-LQ":
        return labeled_ids, False
    if misclassified_ids is None:
        raise AiftError("ACFT-HQ needs the labeled candidates the previous model misclassifies")
    mis = np.asarray(misclassified_ids, dtype=np.int64)
    ids = np.concatenate([new_ids, mis[~np.isin(mis, new_ids)]])
    return ids, False


def make_optimizer(config: FineTuneConfig):
    import keras

    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=config.learning_rate)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=config.learning_rate, momentum=config.momentum)
    return keras.optimizers.RMSprop(learning_rate=config.learning_rate)


def compile_model(model, config: FineTuneConfig) -> None:
    """Compile `model` once for all rounds (re-compiling retraces; rounds must not)."""
    model.compile(
        optimizer=make_optimizer(config),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=False,
    )


def reset_optimizer(model) -> None:
    """Zero the optimizer's slots and step counter (a fresh start from M0 keeps the compiled graph)."""
    opt = getattr(model, "optimizer", None)
    if opt is None:
        return
    for v in opt.variables:
        # the learning rate is an optimizer variable too: zeroing it would silently stop training
        if v.path.split("/")[-1] == "learning_rate":
            continue
        v.assign(np.zeros(v.shape, dtype=v.dtype))


def set_seeds(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and TensorFlow; optionally enable op determinism."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(int(seed) % (2**31 - 1))
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def reseed_layers(model, seed: int) -> None:
    """Reset the state of every Keras `SeedGenerator` in `model` (dropout, random augmentation).

    Keras does not save seed-generator states in `.keras` files, so a model reloaded after a crash
    would otherwise draw other dropout masks than the uninterrupted run. Re-seeding them from the
    round's seed makes each round's training depend only on (weights, optimizer slots, seed).
    """
    k = 0
    for v in model.non_trainable_variables:
        if v.path.endswith("seed_generator_state"):
            value = np.array([int(seed) % (2**31 - 1) + 7919 * k, 0], dtype=v.dtype)
            v.assign(value.reshape(v.shape))
            k += 1


def _candidate_auc_callback(source, val_ids, batch_size, distribution=None):
    """A Keras callback that writes the validation candidates' AUC and cross-entropy (of the mean patch
    prediction) into ``logs["val_auc"]`` and ``logs["val_loss"]`` each epoch (list it before
    ``keras.callbacks.EarlyStopping``, which reads them)."""
    import keras

    from aift_tf.metrics import auc, candidate_prediction
    from aift_tf.pipelines import predict_candidates

    val_ids = np.asarray(val_ids, dtype=np.int64)
    val_labels = source.labels[val_ids]

    class CandidateAUC(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.history = []

        def on_epoch_end(self, epoch, logs=None):
            probs = predict_candidates(self.model, source, val_ids, batch_size=batch_size, distribution=distribution)
            p = candidate_prediction(probs)  # (n, K): binary AUC on column 1, K > 2 the macro one-vs-rest AUC
            value = float(auc(val_labels, p))
            self.history.append(value)
            if logs is not None:
                from sklearn.metrics import log_loss

                logs["val_auc"] = value
                q = np.clip(p, 1e-7, 1.0)
                logs["val_loss"] = float(log_loss(val_labels, q / q.sum(axis=1, keepdims=True),
                                                  labels=np.arange(p.shape[1])))

    return CandidateAUC()


def fine_tune(
    model,
    source,
    ids,
    labels,
    config: FineTuneConfig,
    *,
    round_index: int = 0,
    val_ids=None,
    callbacks=(),
    verbose: int = 0,
    distribution=None,
) -> dict:
    """Fine-tune `model` in place on the patches (examples) of labeled candidates.

    Every example inherits its candidate's label. The model must already be compiled
    (:func:`compile_model`) so that successive rounds reuse one traced training step. Runs with
    `model.fit`, so a model built inside a distribution's scope (`tf.distribute.Strategy.scope()`) trains distributed.

    Args:
        model: a compiled Keras model returning softmax probabilities of the source's examples.
        source: an open `CandidateStore`, or any `aift_tf.sources.PatchSource`: e.g. an
            `aift_tf.trunk_cache.TrunkCache`, with `model` the trainable `rest` of
            `aift_tf.zoo.split_frozen`, trains on the cached trunk activations (same seeded batches
            as on patches; `config.augment` is refused).
        ids: candidate ids to train on.
        labels: their labels (same length).
        config: a `FineTuneConfig`.
        round_index: the active-learning round; seeds the run (`config.seed + 1000 * round`).
        val_ids: candidates with known labels for validation AUC / early stopping.
        callbacks: extra Keras callbacks (e.g. TensorBoard).
        verbose: Keras verbosity.
        distribution: the `tf.distribute.Strategy` the model was built under (validation scoring).

    Returns:
        A dict with per-epoch `loss`, `accuracy`, optional `val_auc`, `epochs`, `seconds`,
        `patches`.

    Example:
    >>> compile_model(model, FineTuneConfig(epochs=2))
    >>> fine_tune(model, store, [0, 3, 7], [1, 0, 0], FineTuneConfig(epochs=2))["epochs"]
    2
    """
    from aift_tf.pipelines import training_dataset
    from aift_tf.sources import as_source

    source = as_source(source)
    ids = np.asarray(ids, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    if ids.ndim != 1 or ids.shape != labels.shape:
        raise AiftError(f"ids and labels must be 1-D of equal length, got {ids.shape} and {labels.shape}")
    if ids.size == 0:
        raise AiftError("nothing to fine-tune on: no labeled candidates given")
    if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", True):
        compile_model(model, config)
    seed = int(config.seed) + 1000 * int(round_index)
    set_seeds(seed, config.deterministic)
    reseed_layers(model, seed)
    repeat = config.steps_per_epoch is not None
    ds = training_dataset(
        source, ids, labels, batch_size=config.batch_size, seed=seed,
        augment=config.augment, balance=config.balance, shuffle=True, repeat=repeat,
    )
    cbs = list(callbacks)
    stopper = None
    if val_ids is not None and len(val_ids) > 0:
        # the AUC callback fills logs["val_auc"] before EarlyStopping reads it (callbacks run in order)
        cbs.append(_candidate_auc_callback(source, val_ids, max(256, config.batch_size), distribution=distribution))
        if config.patience is not None:
            import keras

            stopper = keras.callbacks.EarlyStopping(monitor=config.monitor, mode=MONITORS[config.monitor],
                                                    patience=int(config.patience), restore_best_weights=True)
            cbs.append(stopper)
    t0 = time.perf_counter()
    steps = config.steps_for(ids.size * source.m)
    hist = model.fit(ds, epochs=int(config.epochs), steps_per_epoch=steps, callbacks=cbs, verbose=verbose)
    seconds = time.perf_counter() - t0
    out = {k: [float(x) for x in v] for k, v in hist.history.items()}
    out["epochs"] = len(out.get("loss", []))
    out["seconds"] = seconds
    out["patches"] = int(ids.size * source.m)
    out["candidates"] = int(ids.size)
    if steps is not None:
        out["steps_per_epoch"] = int(steps)
    if stopper is not None and stopper.best is not None and np.isfinite(stopper.best):
        best = int(np.argmax(out["val_auc"]) if config.monitor == "val_auc" else np.argmin(out["val_loss"]))
        out["best_epoch"] = best + 1
        out["best_val_auc"] = float(out["val_auc"][best])
        out["best_" + config.monitor] = float(stopper.best)
    return out
