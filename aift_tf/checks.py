"""Parameter checks at the library's boundary, with one message form.

Every check raises :class:`~aift_tf.errors.AiftError` with the one-line message
``"<name> must be <requirement>; got <value!r>"``, where ``name`` is the parameter's name in the library
(``omega``, ``query_size``), never a command-line flag: the CLIs map their flags onto these names. Values
read back from a project's files are checked by :mod:`aift_tf.annotation.checks`, which also names the file.

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

import math
import numbers
from typing import Iterable, Optional

from aift_tf.errors import AiftError

__all__ = ["invalid", "check_int", "check_number", "check_choice", "number_rule"]


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
              optional: bool = False, coerce: bool = False) -> Optional[int]:
    """``value`` as an ``int`` if it is an integer in ``minimum..maximum``; else the one-form AiftError.

    A Python or numpy integer passes (``True`` never does). With ``coerce`` (settings read from a command
    line or a JSON file), integral floats (``3.0``) and numeric strings (``"3"``) pass too.

    Args:
        value: the value to check.
        name: the parameter's name for the message.
        minimum: smallest allowed value (None: no lower bound).
        maximum: largest allowed value (None: no upper bound).
        optional: if True, ``None`` passes through (meaning "the default").
        coerce: also accept integral floats and numeric strings.

    Returns:
        The integer (or None when ``optional`` and ``value`` is None).

    Example:
    >>> check_int("3", "query_size", 1, coerce=True)
    3
    >>> check_int(0, "query_size", 1)
    Traceback (most recent call last):
        ...
    aift_tf.errors.AiftError: query_size must be an integer >= 1; got 0
    """
    if value is None and optional:
        return None
    rule = "an integer" + (f" {number_rule(minimum, maximum)}" if minimum is not None or maximum is not None else "")
    value = _plain(value)
    if isinstance(value, bool) or not (isinstance(value, numbers.Integral) or
                                       (coerce and isinstance(value, (numbers.Real, str)))):
        raise invalid(name, rule, value)
    try:
        iv = int(value)
    except (TypeError, ValueError, OverflowError):
        raise invalid(name, rule, value) from None
    if not isinstance(value, str) and iv != value:
        raise invalid(name, rule, value)
    if (minimum is not None and iv < minimum) or (maximum is not None and iv > maximum):
        raise invalid(name, rule, iv)
    return iv


def check_number(value, name: str, low=None, high=None, *, low_open: bool = False, high_open: bool = False,
                 optional: bool = False, coerce: bool = False) -> Optional[float]:
    """``value`` as a finite ``float`` within the bounds; else the one-form AiftError.

    Args:
        value: the value to check: a real number (``bool`` is refused); with ``coerce`` also a numeric string.
        name: the parameter's name for the message.
        low: lower bound (None: none); ``low_open`` makes it strict (``> low``).
        high: upper bound (None: none); ``high_open`` makes it strict (``< high``).
        optional: if True, ``None`` passes through.
        coerce: also accept numeric strings (settings read from a command line or a JSON file).

    Returns:
        The float (or None when ``optional`` and ``value`` is None).

    Example:
    >>> check_number(0.25, "alpha", 0, 1, low_open=True)
    0.25
    """
    if value is None and optional:
        return None
    rule = " ".join(x for x in ("a number", number_rule(low, high, low_open=low_open, high_open=high_open)) if x)
    value = _plain(value)
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str) if coerce else numbers.Real):
        raise invalid(name, rule, value)
    try:
        fv = float(value)
    except (TypeError, ValueError):
        raise invalid(name, rule, value) from None
    if not math.isfinite(fv) or (low is not None and (fv < low or (low_open and fv == low))) or \
            (high is not None and (fv > high or (high_open and fv == high))):
        raise invalid(name, rule, value)
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
