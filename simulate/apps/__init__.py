"""Registry of simulated applications.

Each application module exposes::

    NAME: str                      # e.g. "pulmonary-embolism"
    DESCRIPTION: str               # one line
    SCALES: tuple                  # ("quick", "paper")
    def generate(scale="quick", seed=0, progress=None) -> dict

``generate`` returns a dict with keys ``patches`` (n, m, H, W, C) uint8, ``labels`` (n,) int,
``groups`` (n,) int, ``split`` (n,) of "train"/"val"/"test" (or codes 0/1/2), ``class_names`` (list of
str) and ``attrs`` (dict of JSON-serialisable generator parameters; may include ``group_kind`` such as
"volume"/"video"). It is deterministic per (scale, seed). :func:`generate_store` writes it to a
candidate store atomically; :func:`cached_store` caches it under a cache folder.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from aift_tf.errors import AiftError
from aift_tf.files import default_cache_dir

_MODULES = {
    "pulmonary-embolism": "simulate.apps.pulmonary_embolism",
    "colonoscopy-frames": "simulate.apps.colonoscopy_frames",
    "polyp-detection": "simulate.apps.polyp_detection",
}
APP_NAMES = tuple(_MODULES)
SCALES = ("quick", "paper")


def get_app(name: str):
    """Return the module of the simulated application ``name``."""
    if name not in _MODULES:
        raise AiftError(f"unknown app {name!r}; valid apps: {', '.join(APP_NAMES)}")
    return importlib.import_module(_MODULES[name])


def generator_version(name: str) -> int:
    """The app module's GENERATOR_VERSION (1 if it declares none); part of the cache key, so a
    changed generator never reuses a stale cached store."""
    return int(getattr(get_app(name), "GENERATOR_VERSION", 1))


def scale_config(name: str, configs: dict, scale: str, overrides=None) -> dict:
    """A copy of app ``name``'s parameters for ``scale`` (one of ``configs``), updated with ``overrides``."""
    if scale not in configs:
        raise AiftError(f"unknown scale {scale!r} for {name}; valid scales: {', '.join(configs)}")
    cfg = dict(configs[scale])
    cfg.update(overrides or {})
    return cfg


def _check_scale(scale: str) -> None:
    if scale not in SCALES:
        raise AiftError(f"unknown scale {scale!r}; valid scales: {', '.join(SCALES)}")


def generate_store(name: str, out, scale: str = "quick", seed: int = 0, progress=None) -> Path:
    """Generate application ``name`` and write it as a candidate store at ``out`` (atomically)."""
    from aift_tf.store import write_store

    _check_scale(scale)
    app = get_app(name)
    d = app.generate(scale=scale, seed=seed, progress=progress)
    attrs = dict(d.get("attrs", {}))
    attrs.update({"scale": scale, "seed": int(seed), "generator": _MODULES[name],
                  "generator_version": generator_version(name)})
    write_store(
        out, d["patches"], d["labels"], d["groups"], d["split"],
        app=name, class_names=list(d["class_names"]), attrs=attrs,
    )
    return Path(out)


def cached_store(name: str, scale: str = "quick", seed: int = 0, cache_dir=None, progress=None) -> Path:
    """Path of the generated store for (name, scale, seed, generator version), generated once if missing."""
    _check_scale(scale)
    version = generator_version(name)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AiftError(f"cannot create the data cache folder {cache}: {e.strerror}") from None
    path = cache / f"{name}-{scale}-seed{seed}-v{version}.h5"
    if not path.exists():
        generate_store(name, path, scale=scale, seed=seed, progress=progress)
    return path
