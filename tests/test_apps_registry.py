import sys
import types

import numpy as np
import pytest

from aift_tf.errors import AiftError


@pytest.fixture
def tiny_app(monkeypatch):
    from simulate import apps

    mod = types.ModuleType("aift_test_registry_app")
    mod.NAME, mod.DESCRIPTION, mod.SCALES = "tiny-reg", "tiny registry app", ("quick", "paper")
    mod.GENERATOR_VERSION = 3
    mod.calls = 0

    def generate(scale="quick", seed=0, progress=None):
        mod.calls += 1
        rng = np.random.default_rng(seed)
        return {"patches": rng.integers(0, 256, (4, 2, 8, 8, 1), dtype=np.uint8),
                "labels": np.array([0, 1, 0, 1]), "groups": np.array([0, 0, 1, 1]),
                "split": np.array(["train", "train", "test", "test"]),
                "class_names": ["neg", "pos"], "attrs": {"group_kind": "video"}}

    mod.generate = generate
    monkeypatch.setitem(sys.modules, "aift_test_registry_app", mod)
    monkeypatch.setitem(apps._MODULES, "tiny-reg", "aift_test_registry_app")
    return mod


def test_cached_store_generates_once_and_keys_on_generator_version(tiny_app, tmp_path):
    from aift_tf.store import open_store
    from simulate.apps import cached_store

    p1 = cached_store("tiny-reg", seed=2, cache_dir=tmp_path)
    p2 = cached_store("tiny-reg", seed=2, cache_dir=tmp_path)
    assert p1 == p2 and tiny_app.calls == 1 and p1.name.endswith("-v3.h5")
    with open_store(p1) as s:
        assert s.attrs["generator_version"] == 3 and s.attrs["seed"] == 2 and s.app == "tiny-reg"
    tiny_app.GENERATOR_VERSION = 4  # a changed generator never reuses the stale file
    p3 = cached_store("tiny-reg", seed=2, cache_dir=tmp_path)
    assert p3 != p1 and tiny_app.calls == 2


def test_registry_errors(tmp_path):
    from simulate.apps import APP_NAMES, cached_store, get_app

    assert set(APP_NAMES) == {"pulmonary-embolism", "colonoscopy-frames", "polyp-detection"}
    with pytest.raises(AiftError, match="'nope'.*pulmonary-embolism"):
        get_app("nope")
    with pytest.raises(AiftError, match="'huge'"):
        cached_store("pulmonary-embolism", scale="huge", cache_dir=tmp_path)
