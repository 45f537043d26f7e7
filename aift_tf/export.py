"""Export a model for serving: candidate-level SavedModel + ``.keras`` + provenance JSON.

Layout of ``out_dir`` (written atomically: a temporary sibling renamed into place)::

    saved_model/     TensorFlow SavedModel; signature "serving_default":
                     patches float32 (batch, m, H, W, C) in [0, 1] →
                     {"candidate_probability": (batch, K) mean of the patch probabilities,
                      "patch_probabilities": (batch, m, K)}
    model.keras      the Keras model (keras.saving.save_model)
    provenance.json  the caller's provenance plus package/Keras/TensorFlow versions, creation time,
                     input shape, classes, patches per candidate and the zoo model config

Serving needs only TensorFlow: ``tf.saved_model.load(out_dir / "saved_model")``.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from aift_tf.errors import AiftError
from aift_tf.files import atomic_dir, write_json_atomic

SIGNATURE = "serving_default"
SAVED_MODEL = "saved_model"
KERAS_FILE = "model.keras"
PROVENANCE = "provenance.json"


#: everything an export folder holds (an earlier export is recognised by it, see :func:`is_export`)
EXPORT_ENTRIES = frozenset({SAVED_MODEL, KERAS_FILE, PROVENANCE})


def is_export(folder) -> bool:
    """True if ``folder`` is an export written by :func:`export_model`: a real folder holding nothing but
    ``saved_model/``, ``model.keras`` and ``provenance.json``, whose provenance names the aift_tf version and the
    serving signature. Only such a folder is replaced by ``aift export --force``.

    Args:
        folder: the path to look at (nothing is read beyond ``provenance.json``).

    Example:
    >>> is_export("pe-model")
    True
    """
    folder = Path(folder)
    try:
        if folder.is_symlink() or not folder.is_dir():
            return False
        names = {p.name for p in folder.iterdir()}
        prov = folder / PROVENANCE
        if not names <= EXPORT_ENTRIES or prov.is_symlink() or not prov.is_file() or prov.stat().st_size > 1 << 20:
            return False
        info = json.loads(prov.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and "aift_tf_version" in info and isinstance(info.get("signature"), dict)


def _positive_int(value, what):
    if isinstance(value, bool) or not hasattr(value, "__index__") or int(value) < 1:
        raise AiftError(f"{what} {value!r}: expected an int >= 1")
    return int(value)


def export_model(model, out_dir, *, patches_per_candidate, provenance=None) -> Path:
    """Write ``saved_model/``, ``model.keras`` and ``provenance.json`` into ``out_dir``.

    Args:
        model: a Keras model mapping float32 (b, H, W, C) images in [0, 1] to (b, K) probabilities.
        out_dir: destination folder (replaced atomically if it exists; its parent must exist and
            be writable).
        patches_per_candidate: m, fixed in the serving signature.
        provenance: JSON-serialisable dict (strategy, round, seed, labeled count, data sha256, ...).
            Its keys are written as given; the automatic keys below win on a clash.

    Returns:
        ``Path(out_dir)``.
    """
    import keras
    import tensorflow as tf

    import aift_tf

    m = _positive_int(patches_per_candidate, "patches_per_candidate")
    if provenance is not None and not isinstance(provenance, dict):
        raise AiftError(f"provenance {type(provenance).__name__}: expected a dict")
    out_dir = Path(out_dir)
    in_shape = tuple(int(v) for v in model.input_shape[1:])
    if len(in_shape) != 3:
        raise AiftError(f"model {model.name!r}: input shape {model.input_shape} is not (batch, H, W, C)")
    k = int(model.output_shape[-1])
    h, w, c = in_shape

    def serve(patches):
        x = tf.reshape(patches, (-1, h, w, c))
        p = tf.cast(model(x, training=False), tf.float32)
        p = tf.reshape(p, (-1, m, k))
        return {"candidate_probability": tf.reduce_mean(p, axis=1), "patch_probabilities": p}

    try:
        from aift_tf.zoo import model_config

        zoo_config = model_config(model)
    except (AiftError, Exception):
        zoo_config = None
    info = dict(provenance or {})
    info.update(
        aift_tf_version=aift_tf.__version__,
        keras_version=keras.__version__,
        tensorflow_version=tf.__version__,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        model_name=model.name,
        input_shape=list(in_shape),
        num_classes=k,
        patches_per_candidate=m,
        signature={"name": SIGNATURE, "input": "patches", "input_shape": [None, m, h, w, c],
                   "outputs": ["candidate_probability", "patch_probabilities"]},
        model_config=zoo_config,
    )
    try:
        json.dumps(info, default=str)
    except (TypeError, ValueError) as e:
        raise AiftError(f"provenance: not JSON-serialisable ({e})") from None

    try:
        with atomic_dir(out_dir) as tmp:
            archive = keras.export.ExportArchive()
            archive.track(model)
            archive.add_endpoint(
                name=SIGNATURE,
                fn=serve,
                input_signature=[tf.TensorSpec((None, m, h, w, c), tf.float32, name="patches")],
            )
            archive.write_out(str(tmp / SAVED_MODEL), verbose=False)
            keras.saving.save_model(model, str(tmp / KERAS_FILE))
            write_json_atomic(tmp / PROVENANCE, info)
    except AiftError:
        raise
    except OSError as e:
        raise AiftError(f"{out_dir}: cannot write the export ({e.strerror or e})") from None
    except tf.errors.OpError as e:  # TensorFlow's own writers (SaveV2 on a full disk: ResourceExhaustedError)
        from aift_tf.files import write_failure

        failed = write_failure(out_dir, RuntimeError(e.message))
        if failed is not None:
            raise failed from None
        first = (e.message or "").strip().splitlines()[0] if (e.message or "").strip() else ""
        raise AiftError(f"{out_dir}: cannot write the export ({type(e).__name__}: {first}); "
                        f"nothing was changed") from None
    return out_dir


class ExportedModel:
    """Callable over an exported SavedModel: ``em(patches) -> dict of numpy arrays``.

    Attributes: ``path``, ``provenance`` (dict), ``patches_per_candidate``, ``input_shape``,
    ``num_classes``, ``signature`` (the raw TF concrete function).
    """

    def __init__(self, out_dir):
        import tensorflow as tf

        self.path = Path(out_dir)
        sm = self.path / SAVED_MODEL
        if not sm.is_dir():
            raise AiftError(f"{self.path}: no {SAVED_MODEL}/ folder (not an aift_tf export)")
        try:
            self._loaded = tf.saved_model.load(str(sm))
            self.signature = self._loaded.signatures[SIGNATURE]
        except Exception as e:
            raise AiftError(f"{sm}: cannot load the SavedModel ({type(e).__name__})") from None
        prov = self.path / PROVENANCE
        try:
            self.provenance = json.loads(prov.read_text()) if prov.is_file() else {}
        except ValueError:
            raise AiftError(f"{prov}: not valid JSON") from None
        spec = self.signature.structured_input_signature[1]["patches"]
        self.patches_per_candidate = int(spec.shape[1])
        self.input_shape = tuple(int(v) for v in spec.shape[2:])
        self.num_classes = int(self.signature.structured_outputs["candidate_probability"].shape[-1])

    def __call__(self, patches, batch_size=None):
        """Candidate probabilities for float32 ``patches`` (n, m, H, W, C) in [0, 1] (uint8 is /255)."""
        import numpy as np
        import tensorflow as tf

        x = np.asarray(patches)
        if x.dtype == np.uint8:
            x = x.astype(np.float32) / 255.0
        x = x.astype(np.float32, copy=False)
        want = (self.patches_per_candidate,) + self.input_shape
        if x.ndim != 5 or tuple(x.shape[1:]) != want:
            raise AiftError(f"patches shape {x.shape}: expected (n,) + {want}")
        step = batch_size or max(1, len(x))
        outs = [self.signature(patches=tf.constant(x[i:i + step])) for i in range(0, len(x), step)] or [
            self.signature(patches=tf.constant(x))]
        return {key: np.concatenate([o[key].numpy() for o in outs]) for key in outs[0]}

    def __repr__(self):
        return f"ExportedModel({str(self.path)!r}, m={self.patches_per_candidate}, input_shape={self.input_shape})"


def load_exported(out_dir) -> ExportedModel:
    """Load an export folder for serving in Python (TensorFlow only; no Keras model rebuilt)."""
    return ExportedModel(out_dir)
