"""Distribution strategies for scoring and fine-tuning (see docs/distributed.md).

``get_strategy(name)`` returns a ``tf.distribute.Strategy``:

* ``"none"``: TensorFlow's default (single-device) strategy;
* ``"mirrored"``: ``MirroredStrategy`` over every local GPU, or, on a machine without GPUs, over
  every logical CPU device (one CPU device unless logical devices were configured; see
  :func:`set_logical_cpus`);
* ``"multi-worker"``: ``MultiWorkerMirroredStrategy``; the cluster and this worker's role come
  from the ``TF_CONFIG`` environment variable, which must be set (and valid JSON) before the call.

Models must be built and compiled under ``strategy.scope()`` — ``ActiveLearner(distribute=...)``
does that. Fine-tuning runs through ``model.fit`` (Keras splits each global batch over the
replicas and all-reduces gradients); scoring splits every batch over the local replicas
(:func:`aift_tf.pipelines.predict_candidates` with ``strategy=``). With ``multi-worker`` every
worker scores the whole pool with its local replicas (the scores, and so the selections, are
identical on every worker) and fine-tuning is synchronous across workers.
"""

from __future__ import annotations

import json
import os

from aift_tf.errors import AiftError

__all__ = ["STRATEGIES", "canonical_name", "get_strategy", "strategy_name", "set_logical_cpus", "replicas"]

STRATEGIES = ("none", "mirrored", "multi-worker")
_ALIASES = {"none": "none", "default": "none", "single": "none", "mirrored": "mirrored", "mirror": "mirrored",
            "multi-worker": "multi-worker", "multiworker": "multi-worker", "multi_worker": "multi-worker"}


def canonical_name(name) -> str:
    """The canonical strategy name for ``name`` (aliases allowed); raises a one-line AiftError."""
    key = str(name).strip().lower() if name is not None else "none"
    if key not in _ALIASES:
        raise AiftError(f"unknown distribution strategy {name!r}; valid: {', '.join(STRATEGIES)}")
    return _ALIASES[key]


def get_strategy(name="none"):
    """The ``tf.distribute.Strategy`` called ``name`` (one of :data:`STRATEGIES`).

    A ``tf.distribute.Strategy`` instance is returned unchanged. Raises :class:`AiftError` for an
    unknown name, or for ``multi-worker`` without a valid ``TF_CONFIG``.
    """
    import tensorflow as tf

    if isinstance(name, tf.distribute.Strategy):
        return name
    kind = canonical_name(name)
    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(
            devices=cpus, cross_device_ops=tf.distribute.ReductionToOneDevice(reduce_to_device=cpus[0]))
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise AiftError("multi-worker needs the TF_CONFIG environment variable (cluster and task); see docs/distributed.md")
    try:
        cfg = json.loads(raw)
        cfg["cluster"]["worker"], cfg["task"]["type"], int(cfg["task"]["index"])
    except (ValueError, KeyError, TypeError):
        raise AiftError(f"TF_CONFIG is not valid: expected JSON with cluster.worker and task.type/index, got {raw[:80]!r}") from None
    return tf.distribute.MultiWorkerMirroredStrategy()


def strategy_name(strategy) -> str:
    """``"none"``, ``"mirrored"`` or ``"multi-worker"`` for a strategy (or a name)."""
    import tensorflow as tf

    if strategy is None or isinstance(strategy, str):
        return canonical_name(strategy)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "multi-worker"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "mirrored"
    return "none"


def replicas(strategy) -> int:
    """Replicas in sync (1 for ``None``)."""
    return 1 if strategy is None else int(strategy.num_replicas_in_sync)


def set_logical_cpus(count: int) -> None:
    """Split the CPU into ``count`` logical devices (call before TensorFlow initialises devices).

    Useful to test mirrored code paths on a machine without GPUs.
    """
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * int(count))
    except RuntimeError as e:
        raise AiftError(f"cannot split the CPU into {count} logical devices: TensorFlow is already initialised ({e})") from None
