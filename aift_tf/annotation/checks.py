"""One-line validation helpers for values read back from a project (JSON) or typed by a user.

Every check raises :class:`~aift_tf.errors.AiftError` with the file (and line or field) and the bad value
quoted, through :func:`printable` so that terminal control characters are never printed raw. Integers and
numbers are checked by :func:`aift_tf.checks.check_int` and :func:`aift_tf.checks.check_number` with
``where=`` (the one checks module); :func:`printable` and :func:`shown` live there too and are re-exported here.
"""

from __future__ import annotations

import re

# printable and shown are also re-exported: the annotation modules use them from here
from aift_tf.checks import printable, shown
from aift_tf.errors import AiftError

#: Annotator names: a letter or digit, then letters, digits, ``.``, ``_`` or ``-`` (at most 64); they become
#: parts of file names (``queries-NAME.csv``), so nothing else is allowed. The one pattern: the file names
#: that hold an annotator's name are parsed with it too (the labeling page's JavaScript has its own copy).
NAME_PATTERN = r"[^\W_][\w.-]{0,63}"
NAME_RE = re.compile(rf"^{NAME_PATTERN}$")
MAX_NOTE = 2000
#: Upper bounds of the fine-tuning settings (``aift init`` refuses more; config.json is checked against them, so a
#: hand-edited absurd value cannot start a fine-tune that never ends).
MAX_EPOCHS = 10000
MAX_BATCH_SIZE = 65536
#: a larger learning rate only makes the fine-tune diverge (NaN outputs) at every teach
MAX_LEARNING_RATE = 10.0
#: Seeds are numpy seeds: 0..2**32-1.
MAX_SEED = 2 ** 32 - 1


def quoted(path) -> str:
    """``path`` quoted for a shell (``shlex.quote``) and escaped for the terminal: a hint such as
    ``aift teach PROJECT CSV`` can be pasted even when the path holds spaces or quotes.

    Args:
        path: a path or any string.

    Example:
    >>> quoted("my project")
    "'my project'"
    """
    import shlex

    return printable(shlex.quote(str(path)))


def check_str(value, what: str, where: str, *, optional: bool = False, choices=None, empty: bool = False):
    """A string (or None when ``optional``), optionally one of ``choices``; else a one-line AiftError.

    Example:
    >>> check_str("all", '"trainable"', "config.json", choices=("all", "top", "head"))
    'all'
    """
    if value is None and optional:
        return None
    if not isinstance(value, str):
        kind = "a string or null" if optional else "a string"
        raise AiftError(f"{where}: {what} must be {kind}, got {shown(value)}")
    if not empty and not value:
        raise AiftError(f"{where}: {what} is empty")
    if choices is not None and value not in choices:
        raise AiftError(f"{where}: {what} {shown(value)} is not one of {', '.join(choices)}")
    return value


def check_name(value, where: str, what: str = "annotator") -> str:
    """An annotator name (see ``NAME_RE``); else a one-line AiftError quoting it.

    Example:
    >>> check_name("dr.lee", "--annotator")
    'dr.lee'
    """
    if not isinstance(value, str) or not NAME_RE.match(value):
        quoted = repr(printable(value[:70])) if isinstance(value, str) else shown(value)
        raise AiftError(f"{where}: {what} name {quoted} is not allowed (use letters, digits, '.', '_' or '-', "
                        f"starting with a letter or digit, at most 64 characters)")
    return value


def field(obj: dict, key: str, where: str):
    """``obj[key]``, or a one-line AiftError naming the missing field.

    Example:
    >>> field({"n": 3}, "n", "config.json")
    3
    """
    if key not in obj:
        raise AiftError(f"{where}: field \"{key}\" is missing")
    return obj[key]


def check_object(obj, where: str) -> dict:
    """``obj`` if it is a JSON object; else a one-line AiftError saying what it is.

    Example:
    >>> check_object({}, "config.json")
    {}
    """
    if not isinstance(obj, dict):
        kinds = {list: "a list", str: "a string", type(None): "null", bool: "a boolean", int: "a number",
                 float: "a number"}
        raise AiftError(f"{where}: not a JSON object (got {kinds.get(type(obj), type(obj).__name__)})")
    return obj
