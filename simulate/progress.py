"""What an `aift-sim` run shows and logs while it runs: progress bars and lines, quiet TensorFlow warnings,
TensorBoard logs of fine-tuning (per epoch) and of the test AUC (per label count).
"""

from __future__ import annotations

from pathlib import Path

from aift_tf.progress import Progress as BaseProgress


class Progress(BaseProgress):
    """The run's bars (:class:`aift_tf.progress.Progress`): an outer "rounds" bar, one bar per scoring stage
    and per fine-tuning, and per-round lines; silent if quiet."""

    def __init__(self, quiet: bool = False, total: int = 0):
        super().__init__(quiet, outer="rounds", total=total)

    def advance(self, n: int = 1) -> None:
        """Advance the outer bar by ``n`` rounds; rounds past the planned ones (until the target) raise its total."""
        if self.outer is not None and self.outer.total is not None and self.outer.n + n > self.outer.total:
            self.outer.total = self.outer.n + n
        super().advance(n)

    def epochs_callback(self, label):
        """Keras callback: one bar per fine-tuning over its steps (None if quiet)."""
        return self.fit_callback(f"{label} fine-tune")


class LineRecorder(Progress):
    """A worker process's progress: no bars; the per-round lines are kept for the parent to print."""

    def __init__(self):
        super().__init__(quiet=True)
        self.lines = []

    def line(self, msg: str) -> None:
        self.lines.append(msg)


def _quiet_tf_python_logs() -> None:
    """TensorFlow's Python logger warns about tf.function retracing when a new model is fitted for
    every (strategy, seed): expected here, and it would break the progress bars."""
    import logging

    import tensorflow as tf

    tf.get_logger().setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass


def quiet_warnings(quiet: bool) -> None:
    """Silence the warnings every round would repeat (all of them if quiet)."""
    import warnings

    # model.fit on a tf.data.Dataset warns that its default shuffle=True is ignored (the training
    # dataset is shuffled by aift_tf.pipelines); it is noise for every round
    warnings.filterwarnings("ignore", message=".*`shuffle=True` was passed.*")
    _quiet_tf_python_logs()
    if quiet:
        warnings.simplefilter("ignore")


def tensorboard_callback(log_dir: Path):
    """``keras.callbacks.TensorBoard`` writing the per-epoch scalars (``epoch_loss``, ``epoch_accuracy``, and
    ``epoch_val_auc`` where validated) of one fine-tuning round under ``log_dir``.

    Keras's TensorBoard callback hooks every batch even with ``update_freq="epoch"`` (it writes
    ``batch_*`` scalars nobody reads here), which turns each step's logs into Python floats, waits for
    the step to finish and costs ~10% of a round on a CPU; the per-epoch variant leaves the batch
    hooks at their defaults, so Keras dispatches the steps without waiting."""
    import keras

    class EpochTensorBoard(keras.callbacks.TensorBoard):
        on_train_batch_begin = keras.callbacks.Callback.on_train_batch_begin
        on_train_batch_end = keras.callbacks.Callback.on_train_batch_end

    return EpochTensorBoard(log_dir=str(log_dir), write_graph=False, profile_batch=0, histogram_freq=0,
                            update_freq="epoch")


def _scalar_writer(path: Path):
    import tensorflow as tf

    path.mkdir(parents=True, exist_ok=True)
    return tf.summary.create_file_writer(str(path))


def _write_scalar(writer, tag, value, step):
    import tensorflow as tf

    with writer.as_default():
        tf.summary.scalar(tag, float(value), step=int(step))


def write_eval_scalars(log_dir: Path, row: dict) -> None:
    """A rounds.csv row's test AUC and positives found, at its label count, into the TensorBoard folder ``log_dir``."""
    w = _scalar_writer(log_dir)
    _write_scalar(w, "test_auc", row["test_auc"], row["labels"])
    _write_scalar(w, "positives_found", row["positives_found"], row["labels"])
    w.flush()
    w.close()
