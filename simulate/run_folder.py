"""The one module that knows an `aift-sim` run folder's layout.

Layout::

    config.json                 every setting, the plan, data path + sha256, M0, versions, command line
    target.json                 the savings target, fixed from full training alone (no strategy's result enters it)
    rounds.csv                  one row per (strategy, seed, round); rewritten atomically after every round
    full_training.csv           full training's (and scratch's) training curve: loss, validation AUC and loss per epoch
    summary.json, report.md     built from the files above by :mod:`simulate.report`
    learning_curves.png, positives_found.png, froc.png
    models/<strategy>/seed<k>/[round-NNN/]  exported models (aift_tf.export)
    tb/<strategy>/seed<k>/[round-NNN/]      TensorBoard logs of fine-tuning (per round) and test AUC (eval/)
    state/<strategy>/seed<k>/round-NNN/     resume point: learner state + rows.json + test predictions
                                            (+ stop_predictions.npy with --stop: the stop set's classes)

Round folders are named by :func:`aift_tf.files.round_name` (``round-NNN``, as a project's rounds);
state folders of runs written before that (``round<r>``) are still read, so an old run resumes.

``rounds.csv``'s ``stop_kappa`` (with ``--stop``): Cohen's kappa between the round's and the previous
round's predicted classes on the seed's stop set (empty for round 0 and without ``--stop``).
``class_recall``: the test recall of each class 0..K−1 at the argmax (``;``-separated, ``nan`` for a class the
test split lacks); ``class_labels``: the labeled candidates of each class so far (``;``-separated). Both are
empty in run folders written before they existed.

Crash safety: a round's state folder is written atomically (a temporary sibling renamed into place)
before older round folders are removed, so at least one complete resume point always exists.

Names that several modules share live here once: the reserved job names :data:`FULL` and
:data:`SCRATCH`, the FROC rates, the rounds.csv schema, and every file and folder name of the layout above
(no other module of ``simulate`` spells one; tests/test_structure.py checks it).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from aift_tf.files import (atomic_dir, clean_temporaries, read_json, remove_folder,  # noqa: F401 (clean_temporaries: used as rf.clean_temporaries)
                           round_name, round_number, write_json_atomic, write_text_atomic)
from aift_tf.errors import AiftError

CONFIG_FORMAT = 2
FULL = "full"
SCRATCH = "scratch"
RESERVED = (FULL, SCRATCH)
FROC_RATES = (1, 2, 3)
ROUND_FIELDS = (
    "strategy", "seed", "round", "labels", "positives_found", "test_auc",
    "sens_fp1", "sens_fp2", "sens_fp3", "finetune_seconds", "scoring_seconds", "stop_kappa",
    "class_recall", "class_labels",
)
CURVE_FIELDS = ("job", "seed", "epoch", "loss", "val_auc", "val_loss")
_INTS = {"seed", "round", "labels", "positives_found", "epoch"}
_OLD_ROUND_RE = re.compile(r"^round(\d+)$")  # state folders of runs written before round-NNN

# the files and folders of a run folder (the layout above)
CONFIG_FILE = "config.json"
TARGET_FILE = "target.json"
ROUNDS_FILE = "rounds.csv"
CURVES_FILE = "full_training.csv"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.md"
#: the report's figures: key -> file name beside report.md
FIGURES = {
    "learning_curves": "learning_curves.png", "label_efficiency": "label_efficiency.png",
    "positives": "positives_found.png", "full_training": "full_training.png", "froc": "froc.png",
}
_STATE, _TB, _MODELS, _TB_EVAL = "state", "tb", "models", "eval"
# inside a round folder of state/
_ROWS, _INFO, _LEARNER = "rows.json", "info.json", "learner"
_TEST_PREDICTIONS, _STOP_PREDICTIONS = "test_predictions.npz", "stop_predictions.npy"
# inside a final export folder (models/<job>/seed<k>/): the marker of a finished export and its staging folder
_FINAL_MARKER, _FINAL_STAGING, _STAGED_MODEL = ".final", ".final-export", "model"


def slug(name: str) -> str:
    """Folder name of a strategy (canonical names are already path-safe)."""
    return re.sub(r"[^A-Za-z0-9+@._-]", "_", name)


# ----------------------------------------------------------------------------------------------
# the folder itself


def check_new_out_dir(out) -> Path:
    """`out` must not be an existing non-empty folder and must be creatable; nothing is created here."""
    out = Path(out).expanduser()
    if out.exists():
        if not out.is_dir():
            raise AiftError(f"--out {out}: exists and is not a folder")
        if any(out.iterdir()):
            raise AiftError(f"--out {out}: folder exists and is not empty (use --resume to continue a run, "
                            f"or choose another folder)")
    anc = out if out.exists() else out.parent
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise AiftError(f"--out {out}: cannot create it, {anc} is not a folder")
    try:
        probe = tempfile.mkdtemp(prefix=".aift-sim-probe.", dir=anc)
        os.rmdir(probe)
    except OSError as e:
        raise AiftError(f"--out {out}: folder {anc} is not writable ({e.strerror or e})") from None
    return out.resolve()


def config_path(out) -> Path:
    """The run's config.json (the settings, the plan, data, M0, versions, command line)."""
    return Path(out) / CONFIG_FILE


def is_run(out) -> bool:
    """Whether `out` holds a run's config.json (a run that can be resumed)."""
    return config_path(out).is_file()


def write_config(out: Path, config: dict) -> None:
    Path(out).mkdir(parents=True, exist_ok=True)
    write_json_atomic(config_path(out), config)


def load_config(out) -> dict:
    """The saved config.json of a run folder (raises AiftError if `out` is not a run)."""
    out = Path(out).expanduser()
    if not out.is_dir():
        raise AiftError(f"{out} is not a folder")
    f = config_path(out)
    saved = read_json(f, f"{out} is not an aift-sim run (no {CONFIG_FILE})")
    if not isinstance(saved, dict) or "settings" not in saved:
        raise AiftError(f"{f} is not an aift-sim run configuration")
    if saved.get("format") != CONFIG_FORMAT:
        raise AiftError(f"{f}: run format {saved.get('format')!r} was written by another aift-tf version "
                        f"(this one reads format {CONFIG_FORMAT}); start a new run")
    return saved


def write_target(out: Path, target: dict) -> None:
    write_json_atomic(Path(out) / TARGET_FILE, target)


def read_target(out: Path):
    """The fixed savings target (target.json) or None before full training has finished."""
    f = Path(out) / TARGET_FILE
    return read_json(f, f"{f}: missing") if f.is_file() else None


# ----------------------------------------------------------------------------------------------
# per-job folders


def state_dir(out: Path, job: str, seed: int) -> Path:
    return Path(out) / _STATE / slug(job) / f"seed{int(seed)}"


def tb_dir(out: Path, job: str, seed: int) -> Path:
    return Path(out) / _TB / slug(job) / f"seed{int(seed)}"


def export_dir(out: Path, job: str, seed: int) -> Path:
    return Path(out) / _MODELS / slug(job) / f"seed{int(seed)}"


def eval_tb_dir(out: Path, job: str, seed: int) -> Path:
    """TensorBoard folder of a job's test AUC and positives per label count: ``tb/<job>/seed<k>/eval``."""
    return tb_dir(out, job, seed) / _TB_EVAL


def final_export_done(out: Path, job: str, seed: int) -> bool:
    """Whether the job's final model export (``models/<job>/seed<k>/``) has finished."""
    return (export_dir(out, job, seed) / _FINAL_MARKER).is_file()


def final_export_staging(out: Path, job: str, seed: int) -> Path:
    """The folder to export the job's final model into (inside an empty staging folder: a previous attempt's
    is removed); then :func:`commit_final_export`."""
    d = export_dir(out, job, seed)
    d.mkdir(parents=True, exist_ok=True)
    staging = d / _FINAL_STAGING
    shutil.rmtree(staging, ignore_errors=True)
    return staging / _STAGED_MODEL


def commit_final_export(out: Path, job: str, seed: int, rnd: int) -> None:
    """Move the staged export into ``models/<job>/seed<k>/`` (next to any round-NNN/ exports), replacing an
    older one item by item, and mark it finished (round ``rnd``)."""
    d = export_dir(out, job, seed)
    staging = d / _FINAL_STAGING
    for item in (staging / _STAGED_MODEL).iterdir():
        dest = d / item.name
        if dest.exists():
            shutil.rmtree(dest) if dest.is_dir() and not dest.is_symlink() else dest.unlink()
        os.replace(item, dest)
    shutil.rmtree(staging, ignore_errors=True)
    write_text_atomic(d / _FINAL_MARKER, f"round {rnd}\n")


def round_tb_dir(out: Path, job: str, seed: int, r: int) -> Path:
    """TensorBoard folder of round ``r``'s fine-tuning: ``tb/<job>/seed<k>/round-NNN``."""
    return tb_dir(out, job, seed) / round_name(r)


def round_export_dir(out: Path, job: str, seed: int, r: int) -> Path:
    """Export folder of round ``r``'s model: ``models/<job>/seed<k>/round-NNN``."""
    return export_dir(out, job, seed) / round_name(r)


def _parse_round(name: str):
    """The round of a state folder name: ``round-NNN``, or an old run's ``round<r>``; else None."""
    r = round_number(name)
    if r is None:
        m = _OLD_ROUND_RE.match(name)
        r = int(m.group(1)) if m else None
    return r


def round_dirs(sdir: Path) -> dict:
    """{round: folder} of the complete round folders (those holding rows.json) of a job.

    Both ``round-NNN`` and an old run's ``round<r>`` count; for a round present under both names the
    ``round-NNN`` folder wins.
    """
    found = {}
    if sdir.is_dir():
        for p in sorted(sdir.iterdir(), key=lambda q: round_number(q.name) is not None):
            r = _parse_round(p.name)
            if r is not None and p.is_dir() and (p / _ROWS).is_file():
                found[r] = p
    return found


def latest_round(sdir: Path):
    """(round, folder) of the newest complete round of a job, or (None, None)."""
    dirs = round_dirs(sdir)
    if not dirs:
        return None, None
    r = max(dirs)
    return r, dirs[r]


def _prune(sdir: Path, keep: Path) -> None:
    """Remove every complete round folder of a job but ``keep`` (old-style names included)."""
    if not sdir.is_dir():
        return
    for p in sdir.iterdir():
        if p != keep and _parse_round(p.name) is not None and p.is_dir() and (p / _ROWS).is_file():
            remove_folder(p)


def save_round(sdir: Path, r: int, rows: list, learner=None, evaluation=None, extra=None,
               stop_predictions=None) -> Path:
    """Write round `r` of a job atomically (learner state, rows, test predictions, extra info, the stop
    set's predicted classes), then remove its older rounds."""
    sdir.mkdir(parents=True, exist_ok=True)
    target = sdir / round_name(r)
    with atomic_dir(target) as tmp:
        if stop_predictions is not None:
            np.save(tmp / _STOP_PREDICTIONS, np.asarray(stop_predictions, dtype=np.int64))
        if learner is not None:
            learner.save(learner_dir(tmp))
        if evaluation is not None:
            np.savez(tmp / _TEST_PREDICTIONS, ids=evaluation["ids"], probability=evaluation["probability"],
                     labels=evaluation["labels"], groups=evaluation["groups"])
        if extra is not None:
            write_json_atomic(tmp / _INFO, extra)
        write_json_atomic(tmp / _ROWS, rows)
    _prune(sdir, target)
    return target


def learner_dir(round_folder: Path) -> Path:
    """The learner state saved with a round (:meth:`aift_tf.learner.ActiveLearner.load` reads it)."""
    return Path(round_folder) / _LEARNER


def read_rows(round_folder: Path) -> list:
    return json.loads((Path(round_folder) / _ROWS).read_text())


def read_stop_predictions(round_folder: Path):
    """The stop set's predicted classes saved with a round, or None."""
    f = Path(round_folder) / _STOP_PREDICTIONS
    return np.load(f) if f.is_file() else None


def read_info(round_folder: Path) -> dict:
    f = Path(round_folder) / _INFO
    return read_json(f, f"{f}: missing") if f.is_file() else {}


def final_predictions(out: Path, job: str, seed: int):
    """The test predictions saved with a job's newest round, or None."""
    _, p = latest_round(state_dir(out, job, seed))
    if p is None or not (p / _TEST_PREDICTIONS).is_file():
        return None
    with np.load(p / _TEST_PREDICTIONS) as z:
        return {k: z[k] for k in z.files}


# ----------------------------------------------------------------------------------------------
# CSV tables


def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else "nan"
    return str(v)


def _write_csv(path: Path, fields, rows) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(fields)
    for row in rows:
        w.writerow([_fmt(row.get(k)) for k in fields])
    write_text_atomic(path, buf.getvalue())


def _read_csv(path: Path, fields, text_fields) -> list:
    rows = []
    with open(path, newline="") as f:
        for rec in csv.DictReader(f):
            row = {}
            for k in fields:
                v = rec.get(k, "")
                if k in text_fields:
                    row[k] = v
                elif v == "" or v is None:
                    row[k] = None
                elif k in _INTS:
                    row[k] = int(v)
                else:
                    row[k] = float(v)
            rows.append(row)
    return rows


def per_class(text):
    """A ``;``-separated per-class column of rounds.csv as a list of floats (None if empty)."""
    if text is None or text == "":
        return None
    return [float(v) for v in str(text).split(";")]


def per_class_text(values) -> str:
    """The rounds.csv form of per-class values (see :func:`per_class`)."""
    return ";".join(repr(float(v)) if math.isfinite(float(v)) else "nan" for v in values)


def write_rounds(out: Path, rows: list) -> None:
    _write_csv(Path(out) / ROUNDS_FILE, ROUND_FIELDS, rows)


def read_rounds(out: Path) -> list:
    f = Path(out) / ROUNDS_FILE
    if not f.is_file():
        raise AiftError(f"{out}: no {ROUNDS_FILE} yet (the run has not finished a round)")
    return _read_csv(f, ROUND_FIELDS, {"strategy", "class_recall", "class_labels"})


def write_training_curves(out: Path, rows: list) -> None:
    _write_csv(Path(out) / CURVES_FILE, CURVE_FIELDS, rows)


def read_training_curves(out: Path) -> list:
    f = Path(out) / CURVES_FILE
    return _read_csv(f, CURVE_FIELDS, {"job"}) if f.is_file() else []


# ----------------------------------------------------------------------------------------------
# the report (simulate.report)


def report_path(out) -> Path:
    return Path(out) / REPORT_FILE


def figure_path(out, key: str) -> Path:
    """The report figure ``key`` of :data:`FIGURES` (its file name is :data:`FIGURES`'s value)."""
    return Path(out) / FIGURES[key]


def read_summary(out):
    """The run's summary.json, or None (missing or unreadable: the report rebuilds it)."""
    f = Path(out) / SUMMARY_FILE
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError):
        return None


def write_summary(out, summary: dict) -> None:
    write_json_atomic(Path(out) / SUMMARY_FILE, summary)


def write_report(out, text: str) -> None:
    write_text_atomic(report_path(out), text)
