"""The learner's checkpoint: the one owner of its file names and of where they are read and written.

A checkpoint is one folder, written atomically by :meth:`aift_tf.learner.ActiveLearner.save` (through
:func:`write`) and read back by :meth:`~aift_tf.learner.ActiveLearner.load`, by an ``aift`` project (its
``checkpoints/round-TTT/`` folders), by distributed scoring (a saved learner as the model to score) and by the
stopping rule (a checkpoint's model as a cache key)::

    state.json       {config, state}: the learner's constructor arguments, labels, round, RNG, history
    model.keras      the current model, with its optimizer slots (Keras format)
    m0.weights.h5    M0's weights (the starting point every fine-tune begins from)

Every other module names these files through this one: the constants, the ``*_file`` paths,
:func:`is_complete`, :func:`read_state` and :func:`write`. (An export folder's ``model.keras`` is another
format, owned by :mod:`aift_tf.export`.) No TensorFlow is imported here.
"""

from __future__ import annotations

from pathlib import Path

from aift_tf.files import atomic_dir, read_json, write_json_atomic

__all__ = ["STATE_FILE", "MODEL_FILE", "M0_FILE", "state_file", "model_file", "m0_file", "is_complete",
           "read_state", "write"]

STATE_FILE = "state.json"
MODEL_FILE = "model.keras"
M0_FILE = "m0.weights.h5"


def state_file(folder) -> Path:
    """The checkpoint's ``state.json``."""
    return Path(folder) / STATE_FILE


def model_file(folder) -> Path:
    """The checkpoint's ``model.keras``."""
    return Path(folder) / MODEL_FILE


def m0_file(folder) -> Path:
    """The checkpoint's ``m0.weights.h5``."""
    return Path(folder) / M0_FILE


def is_complete(folder) -> bool:
    """True if ``folder`` holds a checkpoint's ``state.json`` and ``model.keras`` (what an ``aift`` project
    counts as a checkpoint; whether they can be read is found out when they are).

    Example:
    >>> is_complete("PROJECT/checkpoints/round-001")
    True
    """
    return state_file(folder).is_file() and model_file(folder).is_file()


def read_state(folder, what: str = "not a saved learner"):
    """The parsed ``state.json`` of checkpoint ``folder`` (not checked: each reader checks what it relies on).

    Args:
        folder: the checkpoint folder.
        what: what ``folder`` is said not to be when it has no ``state.json``: the one-line AiftError reads
            ``"{folder}: {what} (no state.json)"``.

    Example:
    >>> read_state("run/state-3")["round"]
    3
    """
    return read_json(state_file(folder), f"{Path(folder)}: {what} (no {STATE_FILE})")


def write(folder, model, m0_bytes: bytes, state: dict) -> Path:
    """Write a checkpoint to ``folder`` atomically (a temporary sibling renamed into place, replacing an older
    checkpoint there): ``model.keras`` (``model.save``), ``m0.weights.h5`` (``m0_bytes``) and ``state.json``.

    Example:
    >>> write("run/state-3", learner.model, m0_bytes, learner.state_dict())
    """
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        model.save(model_file(tmp))
        m0_file(tmp).write_bytes(m0_bytes)
        write_json_atomic(state_file(tmp), state)
    return folder
