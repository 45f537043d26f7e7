"""`aift-data`: generate, inspect, import-npz/-folder/-csv; errors are one line with exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from aift_tf.store import open_store
from simulate import data_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args):
    """Run ``aift-data`` through ``main`` (the run_cli wrapper) in a subprocess."""
    code = "import sys; from simulate.data_cli import main; main(sys.argv[1:])"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)


def _invoke(args):
    """In-process, through run_cli (so AiftError → exit 2 like the console script)."""
    return CliRunner().invoke(_Main(), [str(a) for a in args])


class _Main:
    """click.testing needs a command object; wrap data_cli.main so run_cli's mapping is exercised."""

    name = "aift-data"

    def main(self, args=None, prog_name=None, **extra):
        data_cli.main(args)


def _npz(path, rng, n=(12, 4, 6), hw=(16, 16)):
    d = {}
    for s, c in zip(("train", "val", "test"), n):
        d[f"{s}_images"] = rng.integers(0, 256, (c,) + hw, dtype=np.uint8)
        d[f"{s}_labels"] = (np.arange(c) % 2)[:, None]
    np.savez(path, **d)
    return d


def _single_line_error(result_stderr):
    lines = [ln for ln in result_stderr.splitlines() if ln.strip() and "it/s" not in ln]
    assert len(lines) == 1 and lines[0].startswith("error: "), result_stderr
    assert "Traceback" not in result_stderr
    return lines[0]


def test_help_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from simulate.data_cli import main\n"
        "for cmd in ([], ['generate'], ['inspect'], ['import-npz'], ['import-folder'], ['import-csv'], ['pretrain']):\n"
        "    try:\n"
        "        main(cmd + ['--help'])\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, (cmd, e.code)\n"
        "print('TF' if any(m == 'tensorflow' or m.startswith('tensorflow.') or m == 'keras' for m in sys.modules) else 'NO-TF')\n"
    )
    env = dict(os.environ, PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("NO-TF")
    assert "import-npz" in r.stdout and "--patches" in r.stdout


def test_import_npz_and_inspect(tmp_path):
    rng = np.random.default_rng(0)
    _npz(tmp_path / "d.npz", rng)
    out = tmp_path / "d.h5"
    r = _run(["import-npz", tmp_path / "d.npz", "--out", out, "--patches", 3, "--patch-size", 12, "--seed", 5,
              "-q"])
    assert r.returncode == 0, r.stderr
    assert "22 candidates x 3 patches 12x12x1 uint8; train 12, val 4, test 6" in r.stdout
    with open_store(out) as s:
        assert (s.n, s.m, s.patch_shape) == (22, 3, (12, 12, 1))
        assert s.attrs["seed"] == 5

    r = _invoke(["inspect", out, "--candidates", 2])
    assert r.exit_code == 0, r.output
    text = r.stdout
    for words in ("app: npz:d", "candidates (n): 22", "patches per candidate (m): 3", "patch shape: 12x12x1",
                  "dtype: uint8", "groups per split: train 12, val 4, test 6"):
        assert words in text
    train_row = next(ln for ln in text.splitlines() if ln.strip().startswith("train"))
    assert train_row.split()[1:] == ["6", "6", "12"]
    montage = tmp_path / "d.montage.png"  # default: beside the store
    assert montage.exists()
    with Image.open(montage) as im:
        w, h = im.size
    assert h >= 4 * 48 and w >= 3 * 48  # 2 candidates x 2 classes rows, 3 patch columns, tiles >= 48 px

    custom = tmp_path / "m.png"
    r = _invoke(["inspect", out, "--montage", custom, "--candidates", 1, "--seed", 3])
    assert r.exit_code == 0 and custom.exists()
    assert f"montage: {custom} (2 candidates x 3 patches)" in r.stdout


def test_existing_out_is_refused_without_overwrite(tmp_path):
    rng = np.random.default_rng(1)
    _npz(tmp_path / "d.npz", rng)
    out = tmp_path / "d.h5"
    out.write_bytes(b"keep me")
    r = _run(["import-npz", tmp_path / "d.npz", "--out", out])
    assert r.returncode == 2
    assert "--overwrite" in _single_line_error(r.stderr)
    assert out.read_bytes() == b"keep me"
    # --overwrite replaces a previous store only, never another file (issue 20)
    r = _invoke(["import-npz", tmp_path / "d.npz", "--out", out, "--overwrite", "-q"])
    assert r.exit_code == 2 and "is not a candidate store" in r.stderr and out.read_bytes() == b"keep me"
    out.unlink()
    assert _invoke(["import-npz", tmp_path / "d.npz", "--out", out, "-q", "--patches", 2]).exit_code == 0
    r = _invoke(["import-npz", tmp_path / "d.npz", "--out", out, "--overwrite", "-q"])
    assert r.exit_code == 0, r.output
    with open_store(out) as s:
        assert s.n == 22


@pytest.mark.parametrize("args, words", [
    (["import-npz", "{tmp}/missing.npz", "--out", "{tmp}/o.h5"], "missing.npz: no such file"),
    (["import-npz", "{tmp}/bad.npz", "--out", "{tmp}/o.h5"], "missing key(s) train_labels"),
    (["import-npz", "{tmp}/d.npz", "--out", "{tmp}/o.h5", "--patches", "0"], "--patches"),
    (["import-npz", "{tmp}/d.npz", "--out", "{tmp}/o.h5", "--scale-min", "0"], "scale_range"),
    (["import-npz", "{tmp}/d.npz", "--out", "{tmp}/o.h5", "--test-fraction", "1.5"], "test_fraction"),
    (["import-npz", "{tmp}/d.npz", "--out", "{tmp}/nodir/o.h5"], "does not exist"),
    (["import-folder", "{tmp}/nofolder", "--out", "{tmp}/o.h5"], "no such folder"),
    (["import-csv", "{tmp}/d.npz", "--out", "{tmp}/o.h5"], "d.npz"),
    (["import-csv", "{tmp}/x.csv", "--out", "{tmp}/o.h5", "--image-size", "ax3"], "--image-size"),
    (["inspect", "{tmp}/missing.h5"], "missing.h5: no such file"),
    (["inspect", "{tmp}/d.npz"], "not a readable HDF5 file"),
    (["generate", "--app", "no-such-app", "--out", "{tmp}/o.h5"], "valid apps: pulmonary-embolism"),
    (["generate", "--app", "colonoscopy-frames", "--scale", "huge", "--out", "{tmp}/o.h5"], "huge"),
    (["frobnicate"], "No such command"),
])
def test_errors_exit_2_one_line_no_output(tmp_path, args, words):
    rng = np.random.default_rng(2)
    _npz(tmp_path / "d.npz", rng)
    np.savez(tmp_path / "bad.npz", train_images=np.zeros((3, 8, 8), np.uint8))
    (tmp_path / "x.csv").write_text("path,label\n")
    before = set(os.listdir(tmp_path))
    r = _invoke([a.format(tmp=tmp_path) for a in args])
    assert r.exit_code == 2, r.output
    assert words in _single_line_error(r.stderr)
    assert set(os.listdir(tmp_path)) == before  # no output, no temporary left behind


def test_import_folder_and_csv_cli(tmp_path):
    rng = np.random.default_rng(3)
    root = tmp_path / "imgs"
    rows = ["path,label"]
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8), "RGB").save(root / c / f"{i}.png")
            rows.append(f"imgs/{c}/{i}.png,{c}")
    res = _invoke(["import-folder", root, "--out", tmp_path / "f.h5", "-m", 2, "--image-size", "16",
                   "--color", "gray", "-q"])
    assert res.exit_code == 0, res.output
    with open_store(tmp_path / "f.h5") as s:
        assert s.class_names == ["a", "b"] and s.patch_shape == (16, 16, 1) and s.n == 8
    (tmp_path / "l.csv").write_text("\n".join(rows) + "\n")
    res = _invoke(["import-csv", tmp_path / "l.csv", "--out", tmp_path / "c.h5", "-m", 2, "--class-names", "b,a",
                   "--patch-size", 10, "-q"])
    assert res.exit_code == 0, res.output
    with open_store(tmp_path / "c.h5") as s:
        assert s.class_names == ["b", "a"] and s.patch_shape == (10, 10, 3)
        np.testing.assert_array_equal(s.labels, [1, 1, 1, 1, 0, 0, 0, 0])


def test_generate_with_a_registered_app(tmp_path, monkeypatch):
    """The generate command's plumbing (progress bar, summary, overwrite) on a tiny in-test app."""
    from simulate import apps

    mod = types.ModuleType("aift_test_tiny_app")
    mod.NAME, mod.DESCRIPTION, mod.SCALES = "tiny", "tiny test app", ("quick", "paper")
    calls = []

    def generate(scale="quick", seed=0, progress=None):
        rng = np.random.default_rng(seed)
        for v in range(3):
            if progress is not None:
                progress(v + 1, 3)
                calls.append(v)
        return {"patches": rng.integers(0, 256, (6, 2, 8, 8, 1), dtype=np.uint8),
                "labels": np.array([0, 1, 0, 1, 0, 1]), "groups": np.array([0, 0, 1, 1, 2, 2]),
                "split": np.array(["train"] * 2 + ["val"] * 2 + ["test"] * 2),
                "class_names": ["neg", "pos"], "attrs": {"group_kind": "video"}}

    mod.generate = generate
    monkeypatch.setitem(sys.modules, "aift_test_tiny_app", mod)
    monkeypatch.setitem(apps._MODULES, "tiny", "aift_test_tiny_app")
    out = tmp_path / "t.h5"
    res = _invoke(["generate", "--app", "tiny", "--seed", 3, "--out", out])
    assert res.exit_code == 0, res.output
    assert calls == [0, 1, 2]
    assert "candidates (n): 6" in res.output and "groups per split: train 1, val 1, test 1" in res.output
    with open_store(out) as s:
        assert s.app == "tiny" and s.attrs["seed"] == 3
    res = _invoke(["generate", "--app", "tiny", "--out", out])
    assert res.exit_code == 2 and "--overwrite" in res.output


@pytest.mark.slow
def test_generate_simulated_app(tmp_path):
    from simulate import apps

    name = "colonoscopy-frames"
    try:
        apps.get_app(name)
    except ImportError as e:  # pragma: no cover - app module not written yet
        pytest.skip(f"{name} not available: {e}")
    out = tmp_path / "c.h5"
    r = _run(["generate", "--app", name, "--scale", "quick", "--seed", 0, "--out", out, "-q"])
    assert r.returncode == 0, r.stderr
    assert f"app: {name}" in r.stdout
    with open_store(out) as s:
        assert s.n > 0 and set(np.unique(s.split)) <= {0, 1, 2}
