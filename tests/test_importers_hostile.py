"""Issue 20: `aift-data` importers, `inspect`, `generate` and `aift score` against hostile input.

Every bad input or fault is one line ``error: ...`` with exit code 2, no traceback, and nothing written
(no output file, no temporary left beside it, the inputs untouched). Labels that are not ``0 .. K-1``
({0, 5}, 1-based) are remapped with a warning naming the map; a store never gets a class without a candidate.
Everything runs through the CLIs' ``main`` (the run_cli wrapper users reach), in-process, on tiny inputs.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from aift_tf.store import open_store

ROOT = Path(__file__).resolve().parents[1]


class _Main:
    """click.testing needs a command object; wrap a CLI's ``main`` so run_cli's error mapping is exercised."""

    def __init__(self, main):
        self.main_fn, self.name = main, "cli"

    def main(self, args=None, prog_name=None, **extra):
        self.main_fn(args)


def data(*args):
    from simulate import data_cli

    return CliRunner().invoke(_Main(data_cli.main), [str(a) for a in args])


def aift(*args):
    from aift_tf import cli

    return CliRunner().invoke(_Main(cli.main), [str(a) for a in args])


def error_line(r) -> str:
    """The one ``error: ...`` line of a failed command (warnings aside); exit code 2, no traceback."""
    assert r.exit_code == 2, (r.exit_code, r.output, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr and r.exception is None or isinstance(r.exception, SystemExit)
    return lines[0]


def no_temporaries(folder):
    left = [p.name for p in Path(folder).iterdir() if ".tmp" in p.name]
    assert not left, left


def _images(n=12, hw=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, hw, hw), dtype=np.uint8)


def _npz(path, labels, **extra):
    labels = np.asarray(labels)
    np.savez(path, train_images=_images(len(labels)), train_labels=labels, **extra)
    return path


# ------------------------------------------------------------------------------------------------
# import-npz: tracebacks that became one line
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("labels, words", [
    (np.array([0, 1] * 5 + [2 ** 62, 10 ** 18]), "train_labels[10] = 4611686018427387904 is too large"),
    (np.array([0, 1] * 5 + [0, 2 ** 64 - 1], np.uint64), "train_labels[11] = 18446744073709551615 is too large"),
    (np.array([0, 1] * 5 + [0, 1e300]), "train_labels[11] = 1e+300 is too large"),
    (np.array([0, 1] * 5 + [0, -1], np.int64), "train_labels[11] = -1 is negative"),
])
def test_npz_huge_or_negative_labels(tmp_path, labels, words):
    npz = _npz(tmp_path / "a.npz", labels)
    r = data("import-npz", npz, "--out", tmp_path / "out.h5", "-q")
    assert words in error_line(r)
    assert not (tmp_path / "out.h5").exists()
    no_temporaries(tmp_path)


def test_npz_that_is_a_zip_of_other_members(tmp_path):
    npz = tmp_path / "junk.npz"
    with zipfile.ZipFile(npz, "w") as z:
        z.writestr("train_images.npy", "not an array at all")
        z.writestr("train_labels.npy", "x")
    line = error_line(data("import-npz", npz, "--out", tmp_path / "o.h5", "-q"))
    assert "member 'train_images' is not a .npy array" in line and "junk.npz" in line
    with zipfile.ZipFile(npz, "w") as z:
        z.writestr("readme.txt", "hello")
    assert "missing key(s) train_images, train_labels (found: readme.txt)" in error_line(
        data("import-npz", npz, "--out", tmp_path / "o.h5", "-q"))
    assert not (tmp_path / "o.h5").exists()


def test_outputs_under_a_regular_file_onto_an_input_or_a_folder(tmp_path):
    npz = _npz(tmp_path / "a.npz", [0, 1] * 6)
    (tmp_path / "afile").write_text("x")
    before = npz.read_bytes()
    cases = [
        (["import-npz", npz, "--out", tmp_path / "afile" / "x.h5"], "afile is a file, not a folder"),
        (["import-npz", npz, "--out", npz, "--overwrite"], "output would overwrite the input"),
        (["import-npz", npz, "--out", tmp_path / "nope" / "x.h5"], "does not exist"),
        (["generate", "--app", "pulmonary-embolism", "--out", tmp_path / "afile" / "x.h5"], "afile is a file"),
    ]
    for args, words in cases:
        assert words in error_line(data(*args, "-q")), args
    assert npz.read_bytes() == before and (tmp_path / "afile").read_text() == "x"
    no_temporaries(tmp_path)


@pytest.mark.parametrize("args, words", [
    (["--seed", -3], "seed must be an integer >= 0 and <= 4294967295; got -3"),
    (["--seed", 99999999999999999999], "got 99999999999999999999"),
    (["--patches", 99999999999], "one candidate would take"),
    (["--patch-size", 99999], "lower m (--patches) or patch_size"),
])
def test_npz_absurd_numbers(tmp_path, args, words):
    npz = _npz(tmp_path / "a.npz", [0, 1] * 6)
    assert words in error_line(data("import-npz", npz, "--out", tmp_path / "o.h5", "-q", *args))
    assert not (tmp_path / "o.h5").exists()


@pytest.mark.parametrize("labels, names, words", [
    ([0, 1] * 6, ["a", "b", "c"], "3 class names but only 2 of them have a candidate: no candidate of class 'c'"),
    ([0, 3] * 6, ["a", "b"], "train_labels[1] = 3 is out of range for 2 class_names"),
    ([1] * 12, None, "only one class found (labels all 1); a store needs >= 2 classes"),
    ([4] * 12, ["a", "b", "c", "d", "e"], "no candidate of class 'a', 'b', 'c', 'd'"),
])
def test_npz_class_names_and_single_class(tmp_path, labels, names, words):
    extra = {} if names is None else {"class_names": np.array(names)}
    npz = _npz(tmp_path / "a.npz", labels, **extra)
    assert words in error_line(data("import-npz", npz, "--out", tmp_path / "o.h5", "-q"))
    assert not (tmp_path / "o.h5").exists()


# ------------------------------------------------------------------------------------------------
# labels that are not 0 .. K-1: remapped with a warning naming the map, nothing lost
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("labels, used, names", [
    ([0, 5] * 6, [0, 5], ["class_0", "class_5"]),
    ([1, 2, 3] * 4, [1, 2, 3], ["class_1", "class_2", "class_3"]),  # 1-based
])
def test_npz_sparse_or_one_based_labels_are_remapped_with_a_warning(tmp_path, labels, used, names):
    npz = _npz(tmp_path / "a.npz", labels)
    out = tmp_path / "o.h5"
    r = data("import-npz", npz, "--out", out, "-q", "--patches", 2)
    assert r.exit_code == 0, r.stderr
    mapping = ", ".join(f"{v}: {k}" for k, v in enumerate(used))
    warning = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warning) == 1 and f"labels {{{', '.join(map(str, used))}}} remapped to {{{mapping}}}" in warning[0]
    with open_store(out) as s:
        assert s.class_names == names
        assert s.attrs["label_map"] == {str(v): k for k, v in enumerate(used)}
        counts = np.bincount(s.labels, minlength=s.num_classes)
        assert (counts > 0).all() and s.num_classes == len(used)  # no empty class
        back = np.asarray(used)[s.labels]
        assert back.tolist() == labels  # nothing lost: the original label of every candidate
    # labels already 0 .. K-1: no warning, no label_map
    r = data("import-npz", _npz(tmp_path / "b.npz", [0, 1] * 6), "--out", tmp_path / "b.h5", "-q", "--patches", 2)
    assert r.exit_code == 0 and "warning" not in r.stderr
    with open_store(tmp_path / "b.h5") as s:
        assert "label_map" not in s.attrs and s.class_names == ["class_0", "class_1"]


def _png_folder(tmp_path, n=8):
    from PIL import Image

    img = tmp_path / "imgs"
    img.mkdir()
    for i, a in enumerate(_images(n, 12)):
        Image.fromarray(a).save(img / f"{i}.png")
    return [f"imgs/{i}.png" for i in range(n)]


def _csv(path, rows, header="path,label"):
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def test_csv_remaps_integer_labels_and_refuses_empty_named_classes(tmp_path):
    paths = _png_folder(tmp_path)
    c = _csv(tmp_path / "l.csv", [(p, [2, 7][i % 2]) for i, p in enumerate(paths)])
    r = data("import-csv", c, "--out", tmp_path / "a.h5", "-q", "--patches", 2)
    assert r.exit_code == 0, r.stderr
    assert "labels {2, 7} remapped to {2: 0, 7: 1}" in r.stderr
    with open_store(tmp_path / "a.h5") as s:
        assert s.class_names == ["class_2", "class_7"] and s.attrs["label_map"] == {"2": 0, "7": 1}
        assert np.bincount(s.labels).tolist() == [4, 4]
    named = _csv(tmp_path / "n.csv", [(p, "ab"[i % 2]) for i, p in enumerate(paths)])
    for args, words in [
        ([named, "--class-names", "a,b,c"], "no candidate of class 'c'"),
        ([named, "--class-names", "a,,b"], "class_names must be distinct non-empty names"),
        ([c, "--class-names", "x,y"], "line 2: label 2 is out of range for 2 class names"),
        ([_csv(tmp_path / "h.csv", [(p, [0, 10 ** 20][i % 2]) for i, p in enumerate(paths)])],
         "line 3: label '100000000000000000000' is too large"),
        ([c, "--image-size", 99999, "--patch-size", 8], "image_size must be at most 268435456 pixels"),
    ]:
        assert words in error_line(data("import-csv", *args, "--out", tmp_path / "x.h5", "-q")), args
    # the output may never be an input, even with --overwrite
    before = c.read_bytes()
    assert "output would overwrite the input" in error_line(data("import-csv", c, "--out", c, "--overwrite", "-q"))
    assert "exists and is not a candidate store" in error_line(
        data("import-csv", c, "--out", tmp_path / paths[0], "--overwrite", "-q"))
    assert c.read_bytes() == before and not (tmp_path / "x.h5").exists()
    no_temporaries(tmp_path)


# ------------------------------------------------------------------------------------------------
# import-volumes: absurd spacings and field of view, empty named classes, output onto an input
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    pytest.importorskip("SimpleITK")
    from simulate import scan_phantom as SP

    root = tmp_path_factory.mktemp("vol")
    (root / "images").mkdir()
    ph = SP.Phantom()
    SP.write_image(ph, root / "images" / "v0.nii.gz")
    centre = ph.centre((0.5, 0.5, 0.5)).tolist()
    cand = _csv(root / "c.csv", [("v0", *centre, k % 2) for k in range(4)], "seriesuid,coordX,coordY,coordZ,class")
    return root, cand


@pytest.mark.parametrize("args, words", [
    (["--spacing", 0.0001], "spacing (mm) 0.0001: "),
    (["--spacing", 1e6], "give a smaller spacing or scale"),
    (["--spacing", 100], "give a spacing of at most"),
    (["--fov", 1e300], "fov (mm) must be in (0.0, 10000.0]"),
    (["--scales", "1,1e300"], "scales must be positive numbers <= 100"),
    (["--patch-size", 99999], "one candidate would take"),
    (["--seed", -1], "seed must be an integer >= 0"),
    (["--class-names", "a,b,c"], "no candidate of class 'c'"),
    (["--class-names", "a,,b"], "class_names must be at least 2 distinct non-empty names"),
])
def test_volumes_absurd_settings(volume, tmp_path, args, words):
    root, cand = volume
    r = data("import-volumes", root / "images", "--candidates", cand, "--out", tmp_path / "v.h5", "-q",
             "--patch-size", 8, "--patches", 2, *args)
    line = error_line(r)
    assert words in line, line
    assert not (tmp_path / "v.h5").exists()
    no_temporaries(tmp_path)


def test_volumes_output_onto_an_input(volume):
    root, cand = volume
    vol = root / "images" / "v0.nii.gz"
    before = (cand.read_bytes(), vol.read_bytes())
    for out, words in ((cand, "output would overwrite the input"), (vol, "exists and is not a candidate store")):
        assert words in error_line(data("import-volumes", root / "images", "--candidates", cand, "--out", out,
                                        "--overwrite", "-q", "--patch-size", 8))
    assert (cand.read_bytes(), vol.read_bytes()) == before
    no_temporaries(root)


# ------------------------------------------------------------------------------------------------
# inspect and generate
# ------------------------------------------------------------------------------------------------


def test_inspect_never_writes_its_montage_over_the_store_or_another_file(tmp_path):
    npz = _npz(tmp_path / "a.npz", [0, 1] * 6)
    store = tmp_path / "s.h5"
    assert data("import-npz", npz, "--out", store, "-q", "--patches", 2).exit_code == 0
    other = tmp_path / "notes.txt"
    other.write_text("mine")
    before = store.read_bytes()
    (tmp_path / "afile").write_text("x")
    for args, words in [
        (["--montage", store], "--montage would overwrite the store itself"),
        (["--montage", other], "exists and is not a PNG image"),
        (["--montage", tmp_path / "afile" / "m.png"], "afile is a file, not a folder"),
        (["--seed", -1], "seed must be an integer >= 0"),
    ]:
        assert words in error_line(data("inspect", store, *args)), args
    assert store.read_bytes() == before and other.read_text() == "mine"
    # a previous montage is replaced
    r = data("inspect", store, "--montage", tmp_path / "m.png")
    assert r.exit_code == 0 and data("inspect", store, "--montage", tmp_path / "m.png").exit_code == 0
    no_temporaries(tmp_path)


@pytest.mark.parametrize("seed", [-3, 99999999999999999999])
def test_generate_refuses_seeds_outside_the_range(tmp_path, seed):
    line = error_line(data("generate", "--app", "pulmonary-embolism", "--seed", seed, "--out", tmp_path / "g.h5", "-q"))
    assert f"seed must be an integer >= 0 and <= 4294967295; got {seed}" in line
    assert not (tmp_path / "g.h5").exists()


# ------------------------------------------------------------------------------------------------
# a full disk and a kill mid-write: nothing half-written
# ------------------------------------------------------------------------------------------------


def test_full_disk_at_the_store_fsync(tmp_path, monkeypatch):
    npz = _npz(tmp_path / "a.npz", [0, 1] * 6)
    real = os.fsync

    def full(fd):
        if stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", full)
    line = error_line(data("import-npz", npz, "--out", tmp_path / "o.h5", "-q", "--patches", 2))
    assert line == f"error: {tmp_path / 'o.h5'}: cannot write (no space left on the device); nothing was changed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]


def test_a_real_full_disk_is_one_line_without_a_crash(tmp_path):
    """A 1 MiB tmpfs (needs root): before, the import printed its error and then segfaulted at exit (h5py)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        rng = np.random.default_rng(0)
        npz = tmp_path / "big.npz"
        np.savez(npz, train_images=rng.integers(0, 256, (200, 32, 32), dtype=np.uint8),
                 train_labels=np.arange(200) % 2)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        code = "import sys; from simulate.data_cli import main; main(sys.argv[1:])"
        r = subprocess.run([sys.executable, "-c", code, "import-npz", str(npz), "--out", str(mnt / "x.h5"), "-q"],
                           capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 2, (r.returncode, r.stderr)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "cannot write (no space left on the device" in lines[0], r.stderr
        assert list(mnt.iterdir()) == []
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_kill_mid_write_leaves_no_store(tmp_path):
    rng = np.random.default_rng(0)
    npz = tmp_path / "big.npz"
    np.savez(npz, train_images=rng.integers(0, 256, (3000, 32, 32), dtype=np.uint8), train_labels=np.arange(3000) % 2)
    out = tmp_path / "o.h5"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    code = "import sys; from simulate.data_cli import main; main(sys.argv[1:])"
    args = [sys.executable, "-c", code, "import-npz", str(npz), "--out", str(out), "-q", "--patches", "16"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            tmp = [p for p in tmp_path.iterdir() if p.name.startswith(".o.h5.")]
            if tmp and tmp[0].stat().st_size > 0:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the import ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists()  # only a hidden temporary can be left; the store never appears half-written
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    with open_store(out) as s:
        assert s.n == 3000


# ------------------------------------------------------------------------------------------------
# aift score
# ------------------------------------------------------------------------------------------------


def test_parse_shard_refuses_malformed_and_huge_shards():
    from aift_tf import scoring
    from aift_tf.errors import AiftError

    for bad, words in [("0/99999999999999999999", "N must be <= 1000000"), ("1/0x3", "not of the form i/N"),
                       ("0/1e3", "not of the form"), ("0/2/3", "not of the form"), ("2/2", "need 0 <= i < N"),
                       ("-1/2", "need 0 <= i < N"), ("", "not of the form"), ("/", "not of the form")]:
        with pytest.raises(AiftError, match="shard") as e:
            scoring.parse_shard(bad)
        assert words in str(e.value), (bad, str(e.value))
    assert scoring.parse_shard("3/1000000") == (3, 1000000)


@pytest.fixture(scope="module")
def scorable(tmp_path_factory):
    """A 16-px store and an untrained small_cnn saved as .keras."""
    from conftest import make_separable_arrays
    from aift_tf.store import write_store
    from aift_tf.zoo import build_model

    d = tmp_path_factory.mktemp("score")
    a = make_separable_arrays(n=20, m=2, size=16)
    store = d / "s.h5"
    write_store(store, a["patches"], a["labels"], a["groups"], a["split"], app="t", class_names=["n", "p"])
    build_model("small_cnn", (16, 16, 3), 2, seed=0, dropout=0.0, filters=(8, 8, 8, 8)).save(d / "m.keras")
    return d, store, d / "m.keras"


def test_score_refuses_bad_shards_and_outputs_onto_inputs(scorable):
    d, store, model = scorable
    (d / "afile").write_text("x")
    (d / "notes.txt").write_text("mine")
    before = {p: p.read_bytes() for p in (store, model, d / "notes.txt")}
    for args, words in [
        (["--shard", "0/99999999999999999999", "--out", d / "p.h5"], "N must be <= 1000000"),
        (["--shard", "a/b", "--out", d / "p.h5"], "not of the form i/N"),
        (["--out", d / "afile" / "p.h5"], "afile is a file, not a folder"),
        (["--out", store], "--out would overwrite the input"),
        (["--out", model], "--out would overwrite the input"),
        (["--out", d / "notes.txt"], "exists and is not an aift scores file"),
    ]:
        assert words in error_line(aift("score", store, "--model", model, "-q", *args)), args
    assert {p: p.read_bytes() for p in before} == before
    # a scores file written before is replaced; merge never writes onto a part or a store
    assert aift("score", store, "--model", model, "-q", "--out", d / "p.h5").exit_code == 0
    assert aift("score", store, "--model", model, "-q", "--out", d / "p.h5").exit_code == 0
    part = (d / "p.h5").read_bytes()
    assert "--out would overwrite the input" in error_line(aift("score", "--merge", d / "p.h5", "--out", d / "p.h5"))
    assert "is not an aift scores file" in error_line(aift("score", "--merge", d / "p.h5", "--out", store))
    assert (d / "p.h5").read_bytes() == part and store.read_bytes() == before[store]
    no_temporaries(d)


@pytest.mark.parametrize("case, words", [
    ("nan", "probs[0, 0, 0] = nan is not a probability in [0, 1]"),
    ("negative", "probs[0, 0, 0] = -3.0 is not a probability"),
    ("float_ids", "ids must be a 1-D integer array; got dtype float64"),
    ("negative_id", "ids holds an id outside 0 .. 2**62"),
    ("shard_count", "attribute shard_count must be an integer in 1 .. 1000000; got 0"),
    ("kind", "attribute kind must be 'part' or 'merged'"),
])
def test_tampered_part_files_are_named_not_merged(scorable, tmp_path, case, words):
    import h5py

    d, store, model = scorable
    part = tmp_path / "part.h5"
    assert aift("score", store, "--model", model, "-q", "--out", part).exit_code == 0
    with h5py.File(part, "a") as f:
        if case in ("nan", "negative"):
            p = f["probs"][()]
            p[0, 0, 0] = np.nan if case == "nan" else -3.0
            del f["probs"]
            f["probs"] = p
        elif case in ("float_ids", "negative_id"):
            ids = f["ids"][()]
            ids = ids + 0.5 if case == "float_ids" else np.r_[-1, ids[1:]]
            del f["ids"]
            f["ids"] = ids
        elif case == "shard_count":
            f.attrs["shard_count"] = 0
        else:
            f.attrs["kind"] = "whatever"
    line = error_line(aift("score", "--merge", part, "--out", tmp_path / "scores.h5"))
    assert str(part) in line and words in line, line
    assert not (tmp_path / "scores.h5").exists()


def test_score_refuses_a_model_that_does_not_fit_the_store(scorable, tmp_path):
    from conftest import make_separable_arrays
    from aift_tf.store import write_store

    d, store, model = scorable
    a = make_separable_arrays(n=12, m=2, size=8)
    small = tmp_path / "s8.h5"
    write_store(small, a["patches"], a["labels"], a["groups"], a["split"], app="t", class_names=["n", "p"])
    line = error_line(aift("score", small, "--model", model, "-q", "--out", tmp_path / "p.h5"))
    assert "the model takes patches of shape 16x16x3 but" in line and "holds 8x8x3 patches" in line
    a = make_separable_arrays(n=12, m=2, size=16)
    three = tmp_path / "k3.h5"
    write_store(three, a["patches"], a["labels"], a["groups"], a["split"], app="t", class_names=["n", "p", "q"])
    assert "the model outputs 2 classes but" in error_line(
        aift("score", three, "--model", model, "-q", "--out", tmp_path / "p.h5"))
    assert not (tmp_path / "p.h5").exists()


def test_pretrain_never_writes_its_weights_over_the_data_store(tmp_path):
    npz = _npz(tmp_path / "a.npz", [0, 1] * 6)
    store = tmp_path / "s.h5"
    assert data("import-npz", npz, "--out", store, "-q", "--patches", 2).exit_code == 0
    before = store.read_bytes()
    line = error_line(data("pretrain", "--self-supervised", "--data", store, "--out", store, "--overwrite", "-q"))
    assert "--out would overwrite the store given as --data" in line and store.read_bytes() == before
    assert "seed must be an integer >= 0" in error_line(data("pretrain", "--seed", -1, "-q"))


def test_overwrite_replaces_only_a_candidate_store(tmp_path):
    npz = _npz(tmp_path / "a.npz", [0, 1] * 6)
    ledger = tmp_path / "ledger.jsonl"
    ledger.write_text('{"round": 1}\n')
    for args in (["import-npz", npz], ["generate", "--app", "pulmonary-embolism"]):
        line = error_line(data(*args, "--out", ledger, "--overwrite", "-q"))
        assert "exists and is not a candidate store; --overwrite replaces only a store" in line
    assert ledger.read_text() == '{"round": 1}\n'
    store = tmp_path / "s.h5"
    assert data("import-npz", npz, "--out", store, "-q", "--patches", 2).exit_code == 0
    assert data("import-npz", npz, "--out", store, "-q", "--patches", 3, "--overwrite").exit_code == 0
    with open_store(store) as s:
        assert s.m == 3
    no_temporaries(tmp_path)


@pytest.mark.parametrize("state, words", [
    ([1], "not a saved learner's state"),
    ({}, "field pool_split must be train, val or test; got None"),
    ({"pool_split": "train", "labeled_ids": ["a"]}, "field labeled_ids must be a list of candidate ids in 0 .. 19"),
    ({"pool_split": "train", "labeled_ids": 5}, "field labeled_ids must be a list"),
    ({"pool_split": "train", "labeled_ids": [99]}, "field labeled_ids must be a list"),
])
def test_score_names_a_tampered_learner_state(scorable, tmp_path, state, words):
    import json
    import shutil

    d, store, model = scorable
    folder = tmp_path / "state"
    folder.mkdir()
    shutil.copy(model, folder / "model.keras")
    if isinstance(state, dict):
        with open_store(store) as s:
            state = {"store_sha256": s.sha256, **state}
    (folder / "state.json").write_text(json.dumps(state))
    line = error_line(aift("score", store, "--model", folder, "-q", "--out", tmp_path / "p.h5"))
    assert words in line, line
    assert not (tmp_path / "p.h5").exists()


def test_volume_with_nan_voxels_reads_them_as_the_window_floor(volume, tmp_path):
    import SimpleITK as sitk

    root, cand = volume
    img = sitk.ReadImage(str(root / "images" / "v0.nii.gz"), sitk.sitkFloat32)
    a = sitk.GetArrayFromImage(img)
    a[:] = np.nan  # a NaN background everywhere (some NIfTI pipelines write one)
    out_img = sitk.GetImageFromArray(a)
    out_img.CopyInformation(img)
    (tmp_path / "images").mkdir()
    sitk.WriteImage(out_img, str(tmp_path / "images" / "v0.mha"))  # MetaImage keeps NaN (NIfTI writes 0)
    r = data("import-volumes", tmp_path / "images", "--candidates", cand, "--out", tmp_path / "n.h5", "-q",
             "--patch-size", 8, "--patches", 2, "--window", "lung")
    assert r.exit_code == 0 and "warning" not in r.stderr.lower(), r.stderr
    with open_store(tmp_path / "n.h5") as s:
        assert (s.read(np.arange(s.n)) == 0).all()  # never the undefined NaN -> uint8 cast


def test_inspect_bounds_its_montage(tmp_path):
    npz = _npz(tmp_path / "a.npz", [0, 1] * 6)
    store = tmp_path / "s.h5"
    assert data("import-npz", npz, "--out", store, "-q", "--patches", 40).exit_code == 0
    r = data("inspect", store, "--montage", tmp_path / "m.png", "-n", 2)
    assert r.exit_code == 0 and "(4 candidates x the first 32 of 40 patches)" in r.output, r.output
    big = tmp_path / "big.npz"
    np.savez(big, train_images=_images(4000, 8), train_labels=np.arange(4000) % 2)
    assert data("import-npz", big, "--out", tmp_path / "b.h5", "-q", "--patches", 8).exit_code == 0
    line = error_line(data("inspect", tmp_path / "b.h5", "--montage", tmp_path / "b.png", "-n", 99999999999))
    assert "lower --candidates (99999999999) or use --no-montage" in line and not (tmp_path / "b.png").exists()
