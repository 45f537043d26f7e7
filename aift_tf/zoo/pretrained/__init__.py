"""The offline pre-trained M0 shipped with aift_tf, and how a store of any patch shape uses it.

AIFT starts from a CNN pre-trained on natural images (M0). Offline there is no ImageNet, so aift_tf
ships M0 weights pre-trained on a procedural natural-image proxy task (built by
``python -m simulate.pretrain``, see that module). Each ``<model>_<H>x<W>x<C>.weights.h5`` in this
folder (:data:`PRETRAINED_DIR`) has a JSON card ``<model>_<H>x<W>x<C>.json`` beside it: model, input
shape, source task, accuracy, a linear-probe check, the command that rebuilds it and the weights'
sha256.

An M0 serves stores of other patch shapes: :func:`default_m0` returns the best-fitting file for the
model and ``aift_tf.zoo.build_model(model, input_shape=store_shape, weights=that_path)`` reads the card
and adapts inside the graph (``pre_resize`` to the M0's height/width, ``pre_gray2rgb`` for one-channel
stores), so the pre-trained trunk sees images of the size and channel count it was trained on and every
trunk weight loads; only the head is new. Channels fit when equal or 1 → 3; anything else (e.g. 2 or 4
channels) has no M0 (``None``) and callers say so.

Example::

    from aift_tf.zoo import build_model
    from aift_tf.zoo.pretrained import default_m0, m0_info

    path = default_m0("small_cnn", (28, 28, 1))        # .../small_cnn_32x32x3.weights.h5
    model = build_model("small_cnn", (28, 28, 1), num_classes=2, weights=path)
    print(m0_info(path, "small_cnn", (28, 28, 1))["summary"])   # sha256, card numbers, the adaptation
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from aift_tf.checks import invalid
from aift_tf.errors import AiftError

PRETRAINED_DIR = Path(__file__).resolve().parent
_NAME_RE = re.compile(r"^(?P<model>.+)_(?P<h>\d+)x(?P<w>\d+)x(?P<c>\d+)\.weights\.h5$")

#: the ``weights`` vocabulary of ``aift init`` and ``aift-sim`` (besides a .keras / .weights.h5 path)
WEIGHTS_CHOICES = ("none", "imagenet", "m0")
#: where M0 comes from: the offline pre-trained M0 (``weights`` decides) or self-supervised on the store's own pool
#: (:func:`aift_tf.ssl.self_supervised_m0`); ``aift init --m0`` and ``aift-sim --m0``
M0_CHOICES = ("offline", "self-supervised")
WEIGHTS_REQUIREMENT = "none, imagenet, m0 or an existing .keras/.weights.h5 file"

__all__ = ["PRETRAINED_DIR", "WEIGHTS_CHOICES", "M0_CHOICES", "parse_weights", "weights_filename", "card_path", "m0_card", "card_shape", "fits", "default_m0",
           "adaptation", "m0_info", "resolve_m0"]


def machine_info() -> dict:
    """Machine, Python and library versions, recorded in every M0 card."""
    import os
    import platform

    import keras
    import numpy as np
    import tensorflow as tf

    return {
        "node": platform.node(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
    }


def weights_filename(model_name: str, input_shape) -> str:
    """``small_cnn``, (32, 32, 3) → ``small_cnn_32x32x3.weights.h5`` (``model_name``: a zoo name)."""
    h, w, c = (int(v) for v in input_shape)
    return f"{model_name}_{h}x{w}x{c}.weights.h5"


def card_path(weights_path) -> Path:
    """``X.weights.h5`` → ``X.json`` (the card beside the weights)."""
    p = Path(weights_path)
    name = p.name
    stem = name[: -len(".weights.h5")] if name.endswith(".weights.h5") else p.stem
    return p.with_name(stem + ".json")


def m0_card(path) -> dict:
    """The JSON card of the weights file ``path`` (``AiftError`` if missing, unreadable or not an object).

    Example: ``m0_card(default_m0("small_cnn", (32, 32, 3)))["source_val_accuracy"]``.
    """
    from aift_tf.files import read_json

    cp = card_path(path)
    card = read_json(cp, f"{path}: no card {cp.name} beside the weights")
    if not isinstance(card, dict):
        raise AiftError(f"{cp}: card is not a JSON object")
    return card


def _shape(value):
    try:
        shape = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(shape) != 3 or min(shape) < 1 or any(int(v) != v for v in value):
        return None
    return shape


def card_shape(path, model_name=None):
    """The input shape (H, W, C) the weights ``path`` were pre-trained on, from its card; ``None`` if there is
    no readable card, the card has no valid ``input_shape``, or it is for another model than ``model_name``.

    Lenient on purpose: ``build_model`` calls it on any ``.weights.h5`` (most have no card).
    """
    try:
        card = m0_card(path)
    except AiftError:
        return None
    if model_name is not None and card.get("model") != model_name:
        return None
    return _shape(card.get("input_shape", ()))


def fits(patch_shape, m0_shape) -> bool:
    """Whether an M0 pre-trained on ``m0_shape`` serves patches of ``patch_shape`` (any H and W; channels
    equal, or 1 → 3 by ``pre_gray2rgb``).

    Example: ``fits((28, 28, 1), (32, 32, 3))`` is True, ``fits((28, 28, 2), (32, 32, 3))`` is False.
    """
    from aift_tf.zoo._common import can_adapt_channels

    return can_adapt_channels(int(patch_shape[2]), int(m0_shape[2]))


def _rank(patch_shape, m0_shape):
    """Sort key: exact shape, then same channels, then the closest size (log scale)."""
    h, w, c = patch_shape
    mh, mw, mc = m0_shape
    return (tuple(m0_shape) != tuple(patch_shape), mc != c, abs(math.log(mh / h)) + abs(math.log(mw / w)))


def default_m0(model_name: str, patch_shape, directory=None):
    """The shipped pre-trained M0 for ``model_name`` that best fits ``patch_shape``, or ``None`` if none fits.

    Args:
        model_name: a zoo model name (an unknown name has no M0: ``None``).
        patch_shape: (H, W, C) of the store's patches (an invalid shape: ``None``).
        directory: where to look (default :data:`PRETRAINED_DIR`).

    Preference: the exact shape, then an M0 with the same channel count, then a three-channel M0 for a
    one-channel store; among those the closest height/width. Channel counts other than equal or 1 → 3 do
    not fit. A file whose sha256 differs from its card raises ``AiftError`` (a corrupted or half-updated
    M0 must not be used silently).

    Returns:
        Path of the ``.weights.h5`` file, or ``None``.

    Example: ``default_m0("small_cnn", (28, 28, 1)).name == "small_cnn_32x32x3.weights.h5"``.
    """
    from aift_tf.files import file_sha256

    shape = _shape(patch_shape) if not isinstance(patch_shape, (str, bytes)) else None
    if shape is None or not isinstance(model_name, str):
        return None
    folder = Path(directory) if directory is not None else PRETRAINED_DIR
    found = []
    for path in sorted(folder.glob(f"{model_name}_*.weights.h5")):
        m = _NAME_RE.match(path.name)
        if not m or m.group("model") != model_name:
            continue
        m0_shape = card_shape(path, model_name)
        if m0_shape is None or m0_shape != (int(m.group("h")), int(m.group("w")), int(m.group("c"))):
            continue
        if fits(shape, m0_shape):
            found.append((_rank(shape, m0_shape), path.name, path))
    if not found:
        return None
    path = min(found)[2]
    card = m0_card(path)
    digest = file_sha256(path)
    if card.get("sha256") != digest:
        raise AiftError(f"{path}: sha256 {digest[:12]}… does not match its card "
                        f"({str(card.get('sha256'))[:12]}…)")
    return path


def adaptation(patch_shape, m0_shape, min_size: int = 1) -> dict:
    """How ``build_model`` adapts ``patch_shape`` inputs to an M0 of ``m0_shape``.

    Returns ``{"resize": [H, W] or None, "gray2rgb": bool, "text": str}``; ``text`` is e.g.
    ``"28x28x1 -> resize to 32x32, gray -> RGB"`` or ``"none (same shape)"``.
    """
    h, w, c = (int(v) for v in patch_shape)
    mh, mw, mc = (int(v) for v in m0_shape)
    th, tw = max(mh, min_size), max(mw, min_size)
    resize = [th, tw] if (th, tw) != (h, w) else None
    gray = c == 1 and mc == 3
    steps = ([f"resize to {th}x{tw}"] if resize else []) + (["gray -> RGB"] if gray else [])
    text = f"{h}x{w}x{c} -> " + ", ".join(steps) if steps else "none (same shape)"
    return {"resize": resize, "gray2rgb": gray, "text": text}


def m0_info(path, model_name: str, patch_shape, source: str = "default-m0") -> dict:
    """What a run or project records about the M0 weights ``path`` it starts from.

    Returns ``{"source", "weights", "sha256", "model", "m0_shape", "adaptation", "card", "summary"}``:
    ``card`` is the full card (``None`` without one), ``summary`` one line for people (``aift status``,
    reports), e.g. ``"sha256 85747a1dd673…; source task 40 classes; val acc 0.58; linear probe 0.53 vs
    random 0.15; adapted 28x28x1 -> resize to 32x32, gray -> RGB"``.
    """
    from aift_tf.files import file_sha256

    path = Path(path)
    digest = file_sha256(path)
    try:
        card = m0_card(path)
    except AiftError:
        card = None
    m0_shape = card_shape(path, model_name) if card else None
    adapt = adaptation(patch_shape, m0_shape) if m0_shape else None
    parts = [f"sha256 {digest[:12]}…"]
    if card:
        src = card.get("source_task") or {}
        if src.get("num_classes"):
            parts.append(f"source task {src['num_classes']} classes")
        if isinstance(card.get("source_val_accuracy"), (int, float)):
            parts.append(f"val acc {card['source_val_accuracy']:.2f}")
        probe = card.get("linear_probe") or {}
        if isinstance(probe.get("pretrained_test_accuracy"), (int, float)):
            parts.append(f"linear probe {probe['pretrained_test_accuracy']:.2f} vs random "
                         f"{probe.get('random_init_test_accuracy', float('nan')):.2f}")
    else:
        parts.append("no card")
    if adapt:
        parts.append(f"adapted {adapt['text']}" if adapt["resize"] or adapt["gray2rgb"] else "same shape")
    return {"source": source, "weights": str(path), "sha256": digest, "model": model_name,
            "m0_shape": list(m0_shape) if m0_shape else None, "adaptation": adapt, "card": card,
            "summary": "; ".join(parts)}


def parse_weights(value):
    """One ``weights`` value: ``none`` → None, ``imagenet``/``m0`` → themselves, else an existing file's absolute path.

    Args:
        value: ``None``, one of :data:`WEIGHTS_CHOICES` (any case) or a path to a ``.keras`` /
            ``.weights.h5`` file (``~`` expanded).

    Returns:
        ``None``, ``"imagenet"``, ``"m0"`` or an absolute path string.

    Raises:
        AiftError: ``weights must be none, imagenet, m0 or an existing .keras/.weights.h5 file; got '...'``.

    Example:
    >>> parse_weights("M0"), parse_weights("none")
    ('m0', None)
    """
    if value is None or str(value).lower() == "none":
        return None
    if str(value).lower() in WEIGHTS_CHOICES:
        return str(value).lower()
    p = Path(value).expanduser()
    if not p.is_file():
        raise invalid("weights", WEIGHTS_REQUIREMENT, str(value))
    return str(p.resolve())


def resolve_m0(weights, model_name: str, patch_shape, *, fallback: bool = False):
    """Resolve a ``--weights`` choice for a store: ``(weights for build_model, record)``.

    Args:
        weights: ``"m0"`` (the shipped M0 that fits, :func:`default_m0`), ``None``/``"none"`` (random
            init), ``"imagenet"``, or a ``.weights.h5`` / ``.keras`` path.
        model_name, patch_shape: the zoo model and the store's (H, W, C).
        fallback: with ``"m0"`` and no M0 that fits: ``True`` → random init, and the record has a
            ``"warning"`` line for the caller to print; ``False`` → ``AiftError``.

    Returns:
        ``(weights, record)``: ``weights`` is ``None``, ``"imagenet"`` or an absolute path string;
        ``record`` has ``source`` (``default-m0``, ``none``, ``imagenet``, ``file``), ``weights`` and
        ``summary`` (one line), plus ``sha256``, ``m0_shape``, ``adaptation`` for files (no full card).

    Example: ``resolve_m0("m0", "small_cnn", (28, 28, 1))[1]["source"] == "default-m0"``.
    """
    def _record(path, source):
        info = m0_info(path, model_name, patch_shape, source=source)
        info.pop("card")
        return str(Path(path).resolve()), info

    if weights is None or str(weights).lower() == "none":
        return None, {"source": "none", "weights": None, "summary": "random initialisation (--weights none)"}
    if str(weights).lower() == "imagenet":
        from aift_tf.zoo import imagenet

        if model_name in imagenet.MODELS:  # converted offline from a package (efficientnet_lite0)
            return "imagenet", {"source": "imagenet", "weights": "imagenet",
                                "summary": imagenet.source_summary(model_name, patch_shape)}
        return "imagenet", {"source": "imagenet", "weights": "imagenet",
                            "summary": "keras.applications ImageNet weights (from the Keras cache)"}
    if str(weights).lower() == "m0":
        path = default_m0(model_name, patch_shape)
        if path is not None:
            return _record(path, "default-m0")
        shape = "x".join(str(int(v)) for v in patch_shape)
        why = (f"no offline pre-trained M0 fits model {model_name} and patch shape {shape} (shipped M0s: "
               f"{', '.join(p.name for p in sorted(PRETRAINED_DIR.glob('*.weights.h5'))) or 'none'}; channels "
               f"must equal the M0's or be 1 for a 3-channel M0)")
        if not fallback:
            raise AiftError(f"--weights m0: {why}")
        return None, {"source": "none", "weights": None, "summary": f"random initialisation: {why}",
                      "warning": f"warning: {why}: the model starts from RANDOM initialisation, without "
                                 f"pre-training (pass --weights PATH to use your own M0)"}
    return _record(parse_weights(weights), "file")
