"""One parameter-check message form (aift_tf.checks), `--version` on the three CLIs from aift_tf.__version__,
`--help` listing the flag-level choices, and the one progress module (aift_tf.progress)."""

import doctest
import os
import subprocess
import sys
from pathlib import Path

import pytest

import aift_tf
from aift_tf import checks
from aift_tf.checks import check_choice, check_int, check_number, invalid
from aift_tf.errors import AiftError

ROOT = str(Path(__file__).resolve().parents[1])
ENV = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")


@pytest.mark.parametrize("call, message", [
    (lambda: check_number(0.5, "omega", low=1), "omega must be a number >= 1; got 0.5"),
    (lambda: check_number(float("nan"), "omega", low=1), "omega must be a number >= 1; got nan"),
    (lambda: check_number("1.5", "omega", low=1), "omega must be a number >= 1; got '1.5'"),
    (lambda: check_number(True, "alpha", 0, 1, low_open=True), "alpha must be a number > 0 and <= 1; got True"),
    (lambda: check_number(0, "alpha", 0, 1, low_open=True), "alpha must be a number > 0 and <= 1; got 0"),
    (lambda: check_number(1.0, "dropout", 0, 1, high_open=True), "dropout must be a number >= 0 and < 1; got 1.0"),
    (lambda: check_int(0, "query_size", 1), "query_size must be an integer >= 1; got 0"),
    (lambda: check_int(2.5, "budget", 1), "budget must be an integer >= 1; got 2.5"),
    (lambda: check_int("3", "budget", 1), "budget must be an integer >= 1; got '3'"),
    (lambda: check_int(9, "budget", 1, 5), "budget must be an integer >= 1 and <= 5; got 9"),
    (lambda: check_choice("most", "trainable", ("all", "top", "head")),
     "trainable must be one of all, top, head; got 'most'"),
])
def test_one_message_form(call, message):
    with pytest.raises(AiftError) as e:
        call()
    assert str(e.value) == message


def test_checks_accept_and_convert():
    import numpy as np

    assert check_number(np.float64(1.5), "omega", low=1) == 1.5
    assert str(invalid("omega", "a number >= 1", np.float64(0.5))) == "omega must be a number >= 1; got 0.5"
    assert check_int(np.int64(3), "budget", 1) == 3 and type(check_int(np.int64(3), "budget", 1)) is int
    assert check_int("3", "budget", 1, coerce=True) == 3 and check_int(3.0, "budget", 1, coerce=True) == 3
    assert check_number("2", "omega", low=1, coerce=True) == 2.0
    assert check_int(None, "budget", 1, optional=True) is None
    assert check_number(None, "lr", 0, optional=True) is None
    assert doctest.testmod(checks).failed == 0


def test_library_boundaries_use_the_form(tmp_path):
    from aift_tf.selection import select
    from aift_tf.zoo.pretrained import parse_weights
    from simulate.config import SimConfig, check_config

    with pytest.raises(AiftError, match=r"^omega must be a number >= 1; got 0\.5$"):
        select([0.1, 0.2, 0.3], 1, omega=0.5)
    with pytest.raises(AiftError, match=r"^omega must be a number >= 1; got 0\.5$"):
        check_config(SimConfig(omega=0.5))
    with pytest.raises(AiftError, match=r"^query_size must be an integer >= 1; got 0$"):
        check_config(SimConfig(query_size=0))
    with pytest.raises(AiftError, match=r"^weights must be none, imagenet, m0 or an existing"):
        parse_weights(tmp_path / "nope.weights.h5")
    assert parse_weights("NONE") is None and parse_weights("Imagenet") == "imagenet" and parse_weights("m0") == "m0"


def _run(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)


@pytest.mark.parametrize("module, prog", [("aift_tf.cli", "aift"), ("simulate.sim_cli", "aift-sim"),
                                          ("simulate.data_cli", "aift-data")])
def test_version_from_one_source(module, prog):
    r = _run(f"import sys\nfrom {module} import main\nmain(['--version'])\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{prog} {aift_tf.__version__}"


def test_help_lists_choices_without_tensorflow():
    code = (
        "import sys\n"
        "from aift_tf.cli import main as aift\nfrom simulate.sim_cli import main as sim\n"
        "for main, args in ((aift, ['init', '--help']), (aift, ['query', '--help']), (sim, ['--help'])):\n"
        "    try:\n        main(args)\n    except SystemExit as e:\n        assert e.code in (0, None), (args, e.code)\n"
        "print('TF' if 'tensorflow' in sys.modules or 'keras' in sys.modules else 'NO-TF')\n")
    r = _run(code)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.strip().endswith("NO-TF")
    for choice in ("small_cnn|alexnet", "all|top|head", "ACFT-LQ", "pulmonary-embolism|colonoscopy-frames",
                   "quick|paper", "offline|self-supervised", "none|imagenet|m0|PATH", "--query-size", "x>=1"):
        assert choice in out, choice
    assert out.count("none|imagenet|m0|PATH") == 2  # one weights vocabulary in aift init and aift-sim


def test_bad_choice_is_one_line_exit_2():
    r = _run("from simulate.sim_cli import main\nmain(['--trainable', 'most'])\n")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "'most'" in r.stderr and "all" in r.stderr
    r = _run("from aift_tf.cli import main\nmain(['query', 'P', '--query-size', '0'])\n")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--query-size" in r.stderr


def test_progress_quiet_and_callbacks():
    from aift_tf.progress import Progress

    with Progress(quiet=True, outer="rounds", total=3) as bars:
        assert bars.outer is None and bars.stage("x") is None and bars.fit_callback("x") is None
        bars.counter("import")(1, 2)  # a no-op
        bars.line("not printed")
        bars.advance()
    bars = Progress(quiet=False)
    cb = bars.stage("aift seed 0", names={"score": "scoring"})
    cb("score", 0, 4)
    cb("score", 2, 4)
    assert bars._bars and next(iter(bars._bars.values())).desc == "aift seed 0 scoring"
    cb("score", 4, 4)
    assert not bars._bars  # a finished stage's bar is closed
    tick = bars.counter("import")
    tick("not a number")
    tick(1, 3)
    bars.close()
    assert not bars._bars


def test_busy_project_is_one_line_error(tmp_path):
    """A second command on a project that another process holds gets the one-line busy error (exit 2)."""
    from aift_tf.project import CONFIG, _locked

    project = tmp_path / "proj"
    project.mkdir()
    (project / CONFIG).write_text("{}")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pathlib import Path\nfrom aift_tf.project import _locked\n"
         f"with _locked(Path({str(project)!r})):\n    print('held', flush=True)\n    time.sleep(30)\n"],
        stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(AiftError) as e:
            with _locked(project):
                pass
        assert str(e.value) == f"{project}: another aift command is working on this project; try again when it ends"
    finally:
        holder.kill()
        holder.wait()


def test_io_folder_helpers(tmp_path):
    from aift_tf.files import clean_temporaries, remove_folder

    (tmp_path / ".a.x.tmp").mkdir()
    (tmp_path / ".b.old").write_text("x")
    (tmp_path / ".round-001.trash").mkdir()
    (tmp_path / "keep").mkdir()
    (tmp_path / ".keep.json").write_text("{}")
    clean_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".keep.json", "keep"]
    clean_temporaries(tmp_path / "missing")
    (tmp_path / "keep" / "f").write_text("x")
    remove_folder(tmp_path / "keep")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".keep.json"]


def test_lock_is_a_file_and_a_read_only_project_still_opens(tmp_path, monkeypatch):
    """The lock is PROJECT/.aift.lock (filelock); where it cannot be created (read-only medium: EROFS, as the
    faults tests inject it) the project opens unlocked for `aift status` only; writing commands are refused."""
    import errno

    import filelock

    from aift_tf.project import LOCK, _locked

    project = tmp_path / "ro"
    project.mkdir()
    with _locked(project):
        assert (project / LOCK).is_file()
    (project / LOCK).unlink()

    def read_only(self, *a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(project / LOCK))

    monkeypatch.setattr(filelock.FileLock, "acquire", read_only)
    entered = False
    with _locked(project, write=False):  # a read-only command (status) opens it unlocked
        entered = True
    assert entered and not (project / LOCK).exists()
    from aift_tf.errors import AiftError

    with pytest.raises(AiftError, match="cannot lock the project"):  # a writing one is refused (issue 20)
        with _locked(project):
            pass
