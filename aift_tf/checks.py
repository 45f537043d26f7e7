"""Parameter checks at the library's boundary, with one message form.

Every check raises :class:`~aift_tf.errors.AiftError` with the one-line message
``"<name> must be <requirement>; got <value!r>"``, where ``name`` is the parameter's name in the library
(``omega``, ``query_size``), never a command-line flag: the CLIs map their flags onto these names.

Values read back from a file (a project's JSON) are checked by the same functions with ``where`` (the file, and
line or field): the message then names it, ``"<where>: <name> <value> is not an integer"``; the value is shown
through :func:`shown`, so that terminal control characters are never printed raw. :mod:`aift_tf.annotation.checks`
holds the other checks of a project's files (strings, names, fields).

Nothing here imports TensorFlow or numpy.

Example:
>>> check_number(1.5, "omega", low=1)
1.5
>>> check_number(0.5, "omega", low=1)
Traceback (most recent call last):
    ...
aift_tf.errors.AiftError: omega must be a number >= 1; got 0.5
"""

from __future__ import annotations

import json
import math
import numbers
from typing import Iterable, Optional

from aift_tf.errors import AiftError

__all__ = ["invalid", "check_int", "check_number", "check_choice", "number_rule", "printable", "shown"]


def printable(text) -> str:
    """``text`` with every non-printable character (terminal controls, bidi overrides) escaped.

    Strings read back from a project or a store (class names, app, paths) are shown through this, so
    that a class name cannot retitle, clear or rewrite the terminal.

    Example:
    >>> printable("PE\\x1b]0;owned\\x07")
    'PE\\\\x1b]0;owned\\\\x07'
    """
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


def shown(value) -> str:
    """A JSON-ish rendering of ``value`` for an error message (escaped, at most 80 characters).

    Example:
    >>> shown([1, "a"])
    '[1, "a"]'
    """
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = type(value).__name__
    if len(text) > 80:
        text = text[:77] + "..."
    return printable(text)


def _plain(value):
    """numpy scalars shown as the Python number they hold (``0.5``, not ``np.float64(0.5)``)."""
    item = getattr(value, "item", None)
    if item is not None and not isinstance(value, (str, bytes)) and getattr(value, "shape", None) == ():
        try:
            return item()
        except (TypeError, ValueError):
            return value
    return value


def invalid(name: str, requirement: str, value) -> AiftError:
    """The one error form: ``AiftError("<name> must be <requirement>; got <value!r>")`` (returned, not raised).

    Args:
        name: the parameter's name (``"omega"``, ``"query_size"``).
        requirement: what it must be (``"a number >= 1"``, ``"one of aift, random"``).
        value: the value given (shown with ``repr``; numpy scalars as plain numbers).

    Example:
    >>> str(invalid("omega", "a number >= 1", 0.5))
    'omega must be a number >= 1; got 0.5'
    """
    return AiftError(f"{name} must be {requirement}; got {_plain(value)!r}")


def number_rule(low=None, high=None, *, low_open: bool = False, high_open: bool = False) -> str:
    """The requirement text of :func:`check_number` (``">= 1"``, ``"> 0 and <= 1"``, ``""`` for any).

    Example:
    >>> number_rule(0, 1, low_open=True)
    '> 0 and <= 1'
    """
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return " and ".join(parts)


def check_int(value, name: str, minimum: Optional[int] = None, maximum: Optional[int] = None, *,
              optional: bool = False, coerce: bool = False, where: str | None = None) -> Optional[int]:
    """``value`` as an ``int`` if it is an integer in ``minimum..maximum``; else a one-line AiftError.

    A Python or numpy integer passes (``True`` never does). With ``coerce`` (settings read from a command
    line or a JSON file), integral floats (``3.0``) and numeric strings (``"3"``) pass too.

    Args:
        value: the value to check.
        name: the parameter's name for the message (with ``where``: what the value is, ``'field "n"'``).
        minimum: smallest allowed value (None: no lower bound).
        maximum: largest allowed value (None: no upper bound).
        optional: if True, ``None`` passes through (meaning "the default").
        coerce: also accept integral floats and numeric strings.
        where: the file (and line or field) the value was read from. The message then reads
            ``"<where>: <name> <value> is not an integer"`` or ``"<where>: <name> <value> is out of range
            (lo..hi)"`` instead of the parameter form ``"<name> must be an integer >= 1; got 0"``.

    Returns:
        The integer (or None when ``optional`` and ``value`` is None).

    Example:
    >>> check_int("3", "query_size", 1, coerce=True)
    3
    >>> check_int(0, "query_size", 1)
    Traceback (most recent call last):
        ...
    aift_tf.errors.AiftError: query_size must be an integer >= 1; got 0
    >>> check_int(48, "id", 0, 47, where="ledger.jsonl line 2")
    Traceback (most recent call last):
        ...
    aift_tf.errors.AiftError: ledger.jsonl line 2: id 48 is out of range (0..47)
    """
    if value is None and optional:
        return None
    rule = "an integer" + (f" {number_rule(minimum, maximum)}" if minimum is not None or maximum is not None else "")

    def not_integer():
        if where is not None:
            return AiftError(f"{where}: {name} {shown(value)} is not an integer")
        return invalid(name, rule, plain)

    plain = _plain(value)
    if isinstance(plain, bool) or not (isinstance(plain, numbers.Integral) or
                                       (coerce and isinstance(plain, (numbers.Real, str)))):
        raise not_integer()
    try:
        iv = int(plain)
    except (TypeError, ValueError, OverflowError):
        raise not_integer() from None
    if not isinstance(plain, str) and iv != plain:
        raise not_integer()
    if (minimum is not None and iv < minimum) or (maximum is not None and iv > maximum):
        if where is None:
            raise invalid(name, rule, iv)
        rng = (f"{minimum}..{maximum}" if minimum is not None and maximum is not None
               else f">= {minimum}" if maximum is None else f"<= {maximum}")
        raise AiftError(f"{where}: {name} {iv} is out of range ({rng})")
    return iv


def check_number(value, name: str, low=None, high=None, *, low_open: bool = False, high_open: bool = False,
                 optional: bool = False, coerce: bool = False, where: str | None = None) -> Optional[float]:
    """``value`` as a finite ``float`` within the bounds; else a one-line AiftError.

    Args:
        value: the value to check: a real number (``bool`` is refused); with ``coerce`` also a numeric string.
        name: the parameter's name for the message (with ``where``: what the value is, ``'field "omega"'``).
        low: lower bound (None: none); ``low_open`` makes it strict (``> low``).
        high: upper bound (None: none); ``high_open`` makes it strict (``< high``).
        optional: if True, ``None`` passes through.
        coerce: also accept numeric strings (settings read from a command line or a JSON file).
        where: the file (and line or field) the value was read from. The message then reads
            ``"<where>: <name> <value> is not a finite number"`` or ``"<where>: <name> <value> must be >= 1"``.

    Returns:
        The float (or None when ``optional`` and ``value`` is None).

    Example:
    >>> check_number(0.25, "alpha", 0, 1, low_open=True)
    0.25
    >>> check_number(0.5, 'field "omega"', 1, where="config.json")
    Traceback (most recent call last):
        ...
    aift_tf.errors.AiftError: config.json: field "omega" 0.5 must be >= 1
    """
    if value is None and optional:
        return None
    bounds = number_rule(low, high, low_open=low_open, high_open=high_open)
    rule = " ".join(x for x in ("a number", bounds) if x)

    def not_finite():
        if where is not None:
            return AiftError(f"{where}: {name} {shown(value)} is not a finite number")
        return invalid(name, rule, plain)

    plain = _plain(value)
    if isinstance(plain, bool) or not isinstance(plain, (numbers.Real, str) if coerce else numbers.Real):
        raise not_finite()
    try:
        fv = float(plain)
    except (TypeError, ValueError, OverflowError):
        raise not_finite() from None
    if not math.isfinite(fv):
        raise not_finite()
    if (low is not None and (fv < low or (low_open and fv == low))) or \
            (high is not None and (fv > high or (high_open and fv == high))):
        if where is None:
            raise invalid(name, rule, plain)
        raise AiftError(f"{where}: {name} {plain} must be {bounds}")
    return fv


def check_choice(value, name: str, choices: Iterable[str], *, optional: bool = False) -> Optional[str]:
    """``value`` if it is one of ``choices``; else the one-form AiftError listing them.

    Args:
        value: the value to check.
        name: the parameter's name for the message.
        choices: the allowed values.
        optional: if True, ``None`` passes through.

    Example:
    >>> check_choice("top", "trainable", ("all", "top", "head"))
    'top'
    >>> check_choice("some", "trainable", ("all", "top", "head"))
    Traceback (most recent call last):
        ...
    aift_tf.errors.AiftError: trainable must be one of all, top, head; got 'some'
    """
    if value is None and optional:
        return None
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise invalid(name, f"one of {', '.join(choices)}", value)
    return value
