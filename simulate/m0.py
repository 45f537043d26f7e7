"""Which M0 an `aift-sim` run starts from (the record config.json keeps under ``m0``).

The choice itself is the library's, shared with a project's ``aift init``: :func:`aift_tf.zoo.pretrained.resolve_m0`
(the offline M0 that fits the store, else random initialisation, said loudly) and
:func:`aift_tf.ssl.self_supervised_m0` (``--m0 self-supervised``); this module adds what a simulation needs on
top (failing early on missing ImageNet weights, the M0's card and path for the report).
"""

from __future__ import annotations

from aift_tf.errors import AiftError
from simulate.config import SimConfig


def resolve_m0(cfg: SimConfig, patch_shape, store=None, cache_dir=None, progress=False) -> dict:
    """Which M0 the run starts from (:func:`aift_tf.zoo.pretrained.resolve_m0`'s record plus ``path``,
    ``card`` and, without pre-training, a ``note`` the report prints in its first lines).

    The default (``--weights`` not given) is the offline M0 that fits the store (adapted inside the model
    to grayscale / another patch size), falling back to random initialisation, said loudly, where none
    fits; ``--weights m0`` insists on it. ``--m0 self-supervised`` pre-trains the model on ``store``'s
    pool (:func:`aift_tf.ssl.self_supervised_m0`, once per store, cached in ``cache_dir/m0``).
    """
    from aift_tf.zoo.pretrained import m0_card
    from aift_tf.zoo.pretrained import resolve_m0 as library_resolve

    shape = tuple(int(v) for v in patch_shape)
    if cfg.m0 == "self-supervised":
        from aift_tf.ssl import self_supervised_m0

        if store is None:
            raise AiftError("--m0 self-supervised needs the store")
        return self_supervised_m0(store, cfg.model, cache_dir=cache_dir, progress=progress)[1]
    w = cfg.weights
    if w == "imagenet":
        # fail before the run folder exists: unsupported model, or weights not in the offline Keras cache
        from aift_tf.zoo import weights as zoo_weights

        zoo_weights.prepare_imagenet(cfg.model, shape)  # also converts efficientnet_lite0 once
        cached = zoo_weights.keras_cache_dir() / zoo_weights.imagenet_filename(cfg.model, shape)
        if not cached.exists():
            raise AiftError(f"--weights imagenet: {cached} is not in the Keras cache (offline); "
                            f"use --weights m0, none or a weights file")
    choice = "m0" if w in (None, "default", "m0") else w
    weights, record = library_resolve(choice, cfg.model, shape, fallback=w in (None, "default"))
    record = dict(record, weights=weights)
    if record["source"] == "none":
        record["note"] = record["summary"]
    elif weights != "imagenet":
        record["path"] = weights
        try:
            record["card"] = m0_card(weights)
        except AiftError:
            record["card"] = None
    else:
        record["path"] = str(cached)
    return record
