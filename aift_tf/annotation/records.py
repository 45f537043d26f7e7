"""The project's JSON records checked field by field: ``config.json``, a checkpoint's ``state.json`` (the file
is named and located by :mod:`aift_tf.checkpoint`) and a round's ``query.json``. Each check raises a
one-line :class:`~aift_tf.errors.AiftError` naming the file and the field (and quoting the bad value); nothing
here imports TensorFlow.
"""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path

from aift_tf.annotation.checks import (MAX_BATCH_SIZE, MAX_EPOCHS, MAX_SEED, check_name, check_object, check_str, field,
                                       printable, shown)
from aift_tf.checks import check_int, check_number
from aift_tf.errors import AiftError

#: config.json formats this version reads (1: every project so far).
CONFIG_FORMATS = (1,)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def now() -> str:
    """The time stamp a record or ledger entry is written with (UTC, ISO 8601, seconds)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def read_json_file(path: Path):
    """Parse a JSON file; one-line AiftError if it is missing, unreadable or not JSON (NaN/Infinity refused).

    Example:
    >>> read_json_file(Path("PROJECT/config.json"))["model"]
    'small_cnn'
    """
    try:
        with open(path, "rb") as f:
            raw = f.read(64 << 20)
            if f.read(1):
                raise AiftError(f"{path}: larger than 64 MB (not written by aift)")
    except FileNotFoundError:
        raise AiftError(f"{path}: missing") from None
    except OSError as e:
        raise AiftError(f"{path}: unreadable ({e.strerror or e})") from None
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=lambda c: float(c))
    except (UnicodeDecodeError, ValueError) as e:
        raise AiftError(f"{path}: not valid JSON ({printable(e)})") from None


def check_project_config(cfg, path) -> dict:
    """config.json of a project, every field the project uses checked (types, ranges, choices).

    Example:
    >>> check_project_config(read_json_file(p / "config.json"), p / "config.json")["class_names"]
    ['negative', 'positive']
    """
    from aift_tf.finetune import LEARNING_STRATEGIES
    from aift_tf.selection import parse_strategy
    from aift_tf.zoo import POLICIES

    w = str(path)
    check_object(cfg, w)
    fmt = field(cfg, "format", w)
    if isinstance(fmt, bool) or fmt not in CONFIG_FORMATS:
        newer = " (written by a newer aift?)" if isinstance(fmt, int) and fmt > max(CONFIG_FORMATS) else ""
        raise AiftError(f"{w}: unsupported project format {shown(fmt)}{newer}")
    check_str(field(cfg, "store", w), 'field "store"', w)
    sha = field(cfg, "store_sha256", w)
    if not isinstance(sha, str) or not _SHA256.match(sha):
        raise AiftError(f"{w}: field \"store_sha256\" must be a 64-digit hex string, got {shown(sha)}")
    names = field(cfg, "class_names", w)
    if (not isinstance(names, list) or len(names) < 2 or not all(isinstance(c, str) and c for c in names)
            or len(set(names)) != len(names)):
        raise AiftError(f"{w}: field \"class_names\" must be a list of >= 2 distinct names, got {shown(names)}")
    check_int(field(cfg, "n", w), 'field "n"', 1, where=w)
    check_int(field(cfg, "m", w), 'field "m"', 1, where=w)
    shape = field(cfg, "patch_shape", w)
    if not isinstance(shape, list) or len(shape) != 3:
        raise AiftError(f"{w}: field \"patch_shape\" must be a list [H, W, C], got {shown(shape)}")
    for v in shape:
        check_int(v, 'field "patch_shape" entry', 1, where=w)
    if "app" in cfg:
        check_str(cfg["app"], 'field "app"', w, optional=True, empty=True)
    check_str(cfg.get("pool_split", "train"), 'field "pool_split"', w)
    check_str(cfg.get("val_split", "val"), 'field "val_split"', w, optional=True)
    check_str(field(cfg, "model", w), 'field "model"', w)
    check_str(field(cfg, "weights", w), 'field "weights"', w, optional=True)
    check_str(field(cfg, "trainable", w), 'field "trainable"', w, choices=POLICIES)
    strategy = check_str(field(cfg, "strategy", w), 'field "strategy"', w)
    try:
        parse_strategy(strategy)
    except AiftError as e:
        raise AiftError(f"{w}: field \"strategy\": {e}") from None
    check_str(field(cfg, "learning", w), 'field "learning"', w, choices=LEARNING_STRATEGIES)
    check_number(field(cfg, "omega", w), 'field "omega"', 1, where=w)
    check_int(field(cfg, "seed", w), 'field "seed"', 0, MAX_SEED, where=w)
    ft = check_object(field(cfg, "finetune", w), f'{w}: field "finetune"')
    for key, most in (("epochs", MAX_EPOCHS), ("batch_size", MAX_BATCH_SIZE)):
        if key in ft:
            check_int(ft[key], f'field "finetune.{key}"', 1, most, where=w)
    if "learning_rate" in ft:
        check_number(ft["learning_rate"], 'field "finetune.learning_rate"', 0, where=w)
    return cfg


def check_state(st, path, n: int, K: int) -> dict:
    """A checkpoint's state.json: round, labeled ids/labels/rounds, history (the fields the project reads).

    Example:
    >>> check_state(read_json_file(state_file(cp)), state_file(cp), 56, 2)["round"]   # aift_tf.checkpoint
    1
    """
    w = str(path)
    check_object(st, w)
    check_int(field(st, "round", w), 'field "round"', 0, where=w)
    lists = {}
    for key in ("labeled_ids", "labeled_labels", "labeled_round"):
        v = st.get(key, []) if key == "labeled_round" else field(st, key, w)
        if not isinstance(v, list):
            raise AiftError(f"{w}: field \"{key}\" must be a list, got {shown(v)}")
        lists[key] = v
    if len(lists["labeled_labels"]) != len(lists["labeled_ids"]):
        raise AiftError(f"{w}: field \"labeled_labels\" has {len(lists['labeled_labels'])} entries but "
                        f"\"labeled_ids\" {len(lists['labeled_ids'])}")
    if "labeled_round" in st and len(lists["labeled_round"]) != len(lists["labeled_ids"]):
        raise AiftError(f"{w}: field \"labeled_round\" has {len(lists['labeled_round'])} entries but "
                        f"\"labeled_ids\" {len(lists['labeled_ids'])}")
    seen = set()
    for i, lab in zip(lists["labeled_ids"], lists["labeled_labels"]):
        check_int(i, 'field "labeled_ids" entry', 0, n - 1, where=w)
        check_int(lab, f'field "labeled_labels" entry (id {i})', 0, K - 1, where=w)
        if i in seen:
            raise AiftError(f"{w}: field \"labeled_ids\" lists id {i} twice")
        seen.add(i)
    # the fine-tune settings the learner runs with come from here: an absurd one would never end
    for key, ft in (('"finetune', st.get("finetune")),
                    ('"config.finetune', st["config"].get("finetune") if isinstance(st.get("config"), dict) else None)):
        if isinstance(ft, dict):
            for name, most in (("epochs", MAX_EPOCHS), ("batch_size", MAX_BATCH_SIZE)):
                if name in ft:
                    check_int(ft[name], f'field {key}.{name}"', 1, most, where=w)
    hist = st.get("history", [])
    if not isinstance(hist, list):
        raise AiftError(f"{w}: field \"history\" must be a list, got {shown(hist)}")
    for h in hist:
        check_object(h, f'{w}: field "history" entry')
        check_int(field(h, "round", f'{w}: field "history" entry'), 'field "history.round"', 1, where=w)
        check_int(h.get("train_candidates", 0), 'field "history.train_candidates"', 0, where=w)
        ft = check_object(h.get("finetune", {}), f'{w}: field "history.finetune"')
        for key in ("loss", "val_auc"):
            v = ft.get(key, [])
            if not isinstance(v, list):
                raise AiftError(f"{w}: field \"history.finetune.{key}\" must be a list, got {shown(v)}")
            for x in v:
                check_number(x, f'field "history.finetune.{key}" entry', where=w)
        if "seconds" in ft:
            check_number(ft["seconds"], 'field "history.finetune.seconds"', 0, where=w)
    return st


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_query_info(info, path, n: int) -> dict:
    """A round's query.json (a query round or an adjudication list): ids, n, annotators' shares.

    Example:
    >>> check_query_info(read_json_file(r / "query.json"), r / "query.json", 56)["ids"][:2]
    [17, 3]
    """
    w = str(path)
    check_object(info, w)
    ids = field(info, "ids", w)
    if not isinstance(ids, list):
        raise AiftError(f"{w}: field \"ids\" must be a list, got {shown(ids)}")
    for i in ids:
        check_int(i, "queried id", 0, n - 1, where=w)
    if len(set(ids)) != len(ids):
        raise AiftError(f"{w}: field \"ids\" lists an id twice")
    check_int(field(info, "n", w), '"n"', 1, where=w)
    if "round" in info:
        check_int(info["round"], 'field "round"', 1, where=w)
    kind = info.get("kind", "query")
    check_str(kind, 'field "kind"', w, choices=("query", "adjudication"))
    idset = set(ids)
    ann = info.get("annotators")
    if ann is not None:
        check_object(ann, f'{w}: field "annotators"')
        for name, share in ann.items():
            check_name(name, f'{w}: field "annotators"')
            if not isinstance(share, list) or not all(_is_int(i) and i in idset for i in share):
                raise AiftError(f"{w}: field \"annotators.{name}\" must be a list of the round's ids, got "
                                f"{shown(share)}")
    shared = info.get("shared", [])
    if not isinstance(shared, list) or not all(_is_int(i) and i in idset for i in shared):
        raise AiftError(f"{w}: field \"shared\" must be a list of the round's ids, got {shown(shared)}")
    return info
