"""Distributions (``tf.distribute`` strategies) for scoring and fine-tuning (see docs/distributed.md).

A *distribution* is a ``tf.distribute.Strategy`` (the word *strategy* alone means a selection strategy).
``get_distribution(name)`` returns a ``tf.distribute.Strategy``:

* ``"none"``: TensorFlow's default (single-device) strategy;
* ``"mirrored"``: ``MirroredStrategy`` over every local GPU, or, on a machine without GPUs, over
  every logical CPU device (one CPU device unless logical devices were configured; see
  :func:`set_logical_cpus`);
* ``"multi-worker"``: ``MultiWorkerMirroredStrategy``; the cluster and this worker's role come
  from the ``TF_CONFIG`` environment variable, which must be set (and valid JSON) before the call.

Models must be built and compiled under ``distribution.scope()`` — ``ActiveLearner(distribute=...)``
does that. Fine-tuning runs through ``model.fit`` (Keras splits each global batch over the
replicas and all-reduces gradients); scoring splits every batch over the local replicas
(:func:`aift_tf.pipelines.predict_candidates` with ``distribution=``). With ``multi-worker`` every
worker scores the whole pool with its local replicas (the scores, and so the selections, are
identical on every worker) and fine-tuning is synchronous across workers.

Multi-worker helpers: :func:`worker_role` (this process's index and the cluster, from ``TF_CONFIG``),
:func:`save_path` (the chief writes the real checkpoint, the others a scratch copy) and
:func:`round_guard` (a peer that dies mid-round becomes a one-line :class:`AiftError` naming it).

Example (run the same program on every worker, each with its own ``TF_CONFIG``):
>>> distribution = get_distribution("multi-worker")     # the first TensorFlow call of the process
>>> with round_guard(distribution):
...     learner = ActiveLearner.load("state-1", store, distribute=distribution)
...     ids, _ = learner.query(20)
...     learner.teach(ids, labels_of(ids))
...     learner.save(save_path("state-2", distribution, scratch="/tmp"))
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
from pathlib import Path

from aift_tf.errors import AiftError

__all__ = ["DISTRIBUTIONS", "canonical_name", "get_distribution", "distribution_name", "set_logical_cpus", "replicas",
           "worker_role", "save_path", "round_guard"]

DISTRIBUTIONS = ("none", "mirrored", "multi-worker")
_ALIASES = {"none": "none", "default": "none", "single": "none", "mirrored": "mirrored", "mirror": "mirrored",
            "multi-worker": "multi-worker", "multiworker": "multi-worker", "multi_worker": "multi-worker"}


def canonical_name(name) -> str:
    """The canonical distribution name for ``name`` (aliases allowed); raises a one-line AiftError."""
    key = str(name).strip().lower() if name is not None else "none"
    if key not in _ALIASES:
        raise AiftError(f"unknown distribution strategy {name!r}; valid: {', '.join(DISTRIBUTIONS)}")
    return _ALIASES[key]


def get_distribution(name="none", *, timeout_seconds=None):
    """The ``tf.distribute.Strategy`` called ``name`` (one of :data:`DISTRIBUTIONS`).

    A ``tf.distribute.Strategy`` instance is returned unchanged. Raises :class:`AiftError` for an
    unknown name, or for ``multi-worker`` without a valid ``TF_CONFIG``.

    Args:
        name: a distribution name (aliases allowed) or a ``tf.distribute.Strategy``.
        timeout_seconds: ``multi-worker`` only: fail a collective (all-reduce) that does not finish in
            that time (``tf.distribute.experimental.CommunicationOptions``), e.g. when a peer hangs
            without dying; ``None`` waits forever (a peer that dies is detected at once anyway).

    Example:
    >>> get_distribution("mirrored").num_replicas_in_sync
    1
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
    worker_role()  # validates TF_CONFIG
    options = None
    if timeout_seconds is not None:
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=float(timeout_seconds))
    return _multi_worker_class()(communication_options=options)


_MW_CLASS = None


def _multi_worker_class():
    """``MultiWorkerMirroredStrategy`` whose ``reduce`` takes what Keras 3's ``model.fit`` passes it.

    Keras 3 (3.15) calls ``strategy.reduce`` with a nested (x, y) batch before training and with
    ``axis=0`` on scalar metrics; the stock strategy handles neither under multi-worker
    (keras-team/keras#20585, tensorflow/tensorflow#72388: "Attempt to convert a value (PerReplica…)",
    "Invalid reduction dimension 0"). This subclass reduces every leaf separately and scalars across
    replicas only — the same results MirroredStrategy gives; all collectives stay TensorFlow's.
    """
    global _MW_CLASS
    if _MW_CLASS is None:
        import tensorflow as tf

        class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
            def reduce(self, reduce_op, value, axis):
                base = super().reduce

                def one(v):
                    ax = axis
                    if ax is not None and all(getattr(getattr(t, "shape", None), "rank", None) == 0
                                              for t in self.experimental_local_results(v)):
                        ax = None
                    return base(reduce_op, v, ax)

                return tf.nest.map_structure(one, value)

        _MW_CLASS = MultiWorkerMirroredStrategy
    return _MW_CLASS


def worker_role() -> tuple:
    """``(index, workers)`` of this process from ``TF_CONFIG``: its task index and the worker addresses.

    Raises a one-line :class:`AiftError` when ``TF_CONFIG`` is missing or not valid.

    Example:
    >>> os.environ["TF_CONFIG"] = '{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}'
    >>> worker_role()
    (1, ['a:1', 'b:1'])
    """
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise AiftError("multi-worker needs the TF_CONFIG environment variable (cluster and task); see docs/distributed.md")
    try:
        cfg = json.loads(raw)
        workers = [str(w) for w in cfg["cluster"]["worker"]]
        kind, index = cfg["task"]["type"], int(cfg["task"]["index"])
    except (ValueError, KeyError, TypeError):
        raise AiftError(f"TF_CONFIG is not valid: expected JSON with cluster.worker and task.type/index, got {raw[:80]!r}") from None
    if kind not in ("worker", "chief") or not workers or not 0 <= index < len(workers):
        raise AiftError(f"TF_CONFIG task {kind!r} index {index} does not name one of the {len(workers)} workers")
    return index, workers


def _task_index(distribution) -> int:
    resolver = getattr(distribution, "cluster_resolver", None)
    task = getattr(resolver, "task_id", None)
    return int(task) if task is not None else 0


def save_path(path, distribution, scratch=None) -> Path:
    """Where this worker writes a checkpoint: ``path`` on the chief (worker 0, or any process without
    multi-worker), ``SCRATCH/NAME.worker-I`` on the others (default ``SCRATCH``: the temp folder).

    Every worker must still call ``save`` (Keras's multi-worker convention), but only the chief's copy
    is the result; a worker-local scratch folder keeps the others from racing on a shared file system.

    Example:
    >>> learner.save(save_path("run/state-2", distribution, scratch="/scratch"))
    """
    path = Path(path)
    index = _task_index(distribution) if distribution_name(distribution) == "multi-worker" else 0
    if index == 0:
        return path
    import tempfile

    return Path(scratch or tempfile.gettempdir()) / f"{path.name}.worker-{index}"


_TASK = re.compile(r"/job:(?:worker|chief)/replica:\d+/task:(\d+)")
_GRPC = re.compile(r'grpc_message:"([^"]+)"')
_ABORTED = re.compile(r"aborted by: ([^\n]+)")


def _reachable(address: str, timeout: float = 1.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def round_guard(distribution):
    """Turn the failure of a peer worker during a multi-worker round into a one-line :class:`AiftError`.

    When a worker dies (or, with ``get_distribution(..., timeout_seconds=...)``, hangs) TensorFlow aborts the
    collectives of the others (``UnavailableError``, ``DeadlineExceededError``…). Inside the guard that
    becomes ``AiftError("multi-worker round failed on worker 0: worker 1 (host:port) stopped responding
    …")``: the worker is taken from TensorFlow's message, else found by probing the peers' ports. Save
    with ``ActiveLearner.save`` (atomic) as the last step inside the guard, so a failed round leaves no
    checkpoint. The process's collectives stay aborted: exit and restart every worker to rerun the round.

    Example:
    >>> with round_guard(distribution):
    ...     learner.teach(ids, labels)
    ...     learner.save(save_path("state-2", distribution))
    """
    import tensorflow as tf

    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
            tf.errors.AbortedError, tf.errors.InternalError) as e:
        if distribution_name(distribution) != "multi-worker":
            raise
        me, workers = worker_role()
        text = str(getattr(e, "message", e))
        named = sorted({int(t) for t in _TASK.findall(text)} - {me})
        dead = [i for i in named if i < len(workers)] or [
            i for i, w in enumerate(workers) if i != me and not _reachable(w)]
        who = ", ".join(f"worker {i} ({workers[i]})" for i in dead) or "a peer worker"
        reason = _GRPC.search(text) or _ABORTED.search(text)
        reason = reason.group(1).strip() if reason else text.strip().splitlines()[0] if text.strip() else ""
        raise AiftError(f"multi-worker round failed on worker {me}: {who} stopped responding "
                        f"({type(e).__name__}: {reason[:100]}); nothing was saved; restart every worker "
                        f"to rerun the round") from None


def distribution_name(distribution) -> str:
    """``"none"``, ``"mirrored"`` or ``"multi-worker"`` for a distribution (or a name)."""
    import tensorflow as tf

    if distribution is None or isinstance(distribution, str):
        return canonical_name(distribution)
    if isinstance(distribution, tf.distribute.MultiWorkerMirroredStrategy):
        return "multi-worker"
    if isinstance(distribution, tf.distribute.MirroredStrategy):
        return "mirrored"
    return "none"


def replicas(distribution) -> int:
    """Replicas in sync (1 for ``None``)."""
    return 1 if distribution is None else int(distribution.num_replicas_in_sync)


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
