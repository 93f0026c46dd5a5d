"""Strict converters for NMEA 0183 field strings (private to :mod:`geofence.nmea`).

pynmea2 checks the framing and the checksum but converts fields lazily and loosely (``float``
also accepts ``"nan"``, ``"inf"`` and ``"1_0"``). These converters are strict: an empty field is
``None``, anything malformed or out of range raises :class:`FieldError`, and the whole sentence
is then counted as rejected instead of yielding a half-parsed record.
"""

from __future__ import annotations

import datetime as dt
import math

_DIGITS = frozenset("0123456789")
_NUMBER = frozenset("0123456789.-+")


class FieldError(ValueError):
    """A field of an otherwise well-framed sentence is malformed or out of range."""


def number(text: str) -> float | None:
    """A finite decimal number, or ``None`` for an empty field."""
    if not text:
        return None
    if text.isdigit():  # the common case; input lines are ASCII, so only 0-9
        return float(text)
    if not _NUMBER.issuperset(text):
        raise FieldError(f"not a number: {text!r}")
    try:
        value = float(text)
    except ValueError as e:
        raise FieldError(f"not a number: {text!r}") from e
    if not math.isfinite(value):
        raise FieldError(f"not a finite number: {text!r}")
    return value


def integer(text: str) -> int | None:
    """A non-negative decimal integer, or ``None`` for an empty field."""
    if not text:
        return None
    if not text.isdigit() or len(text) > 9:  # ASCII input: isdigit() is [0-9]
        raise FieldError(f"not an integer: {text!r}")
    return int(text)


def coordinate(value: str, hemisphere: str, *, latitude: bool) -> float | None:
    """``ddmm.mmmm`` / ``dddmm.mmmm`` plus ``N``/``S``/``E``/``W`` as signed decimal degrees.

    ``None`` when the value is empty (no position); both fields must be present together.
    """
    if not value and not hemisphere:
        return None
    raw = number(value)
    if raw is None or raw < 0:
        raise FieldError(f"bad coordinate {value!r}")
    degrees, minutes = divmod(raw, 100.0)
    limit = 90.0 if latitude else 180.0
    result = degrees + minutes / 60.0
    if minutes >= 60.0 or result > limit:
        raise FieldError(f"coordinate out of range: {value!r}")
    if hemisphere == ("N" if latitude else "E"):
        return result
    if hemisphere == ("S" if latitude else "W"):
        return -result
    raise FieldError(f"bad hemisphere {hemisphere!r}")


def time_of_day(text: str) -> dt.time | None:
    """``hhmmss[.sss]`` as a :class:`datetime.time`, or ``None`` for an empty field."""
    if not text:
        return None
    if len(text) < 6 or not _DIGITS.issuperset(text[:6]):
        raise FieldError(f"bad time {text!r}")
    hours, minutes = int(text[0:2]), int(text[2:4])
    seconds = number(text[4:])
    if seconds is None or hours > 23 or minutes > 59 or not 0.0 <= seconds < 60.0:
        raise FieldError(f"bad time {text!r}")
    whole = int(seconds)
    micro = min(999_999, round((seconds - whole) * 1_000_000))
    return dt.time(hours, minutes, whole, micro)


def two_digit_year(yy: int) -> int:
    """RMC's two-digit year: 80-99 → 19yy, 00-79 → 20yy (the pivot pynmea2 and gpsd use)."""
    return 1900 + yy if yy >= 80 else 2000 + yy


def rmc_date(text: str) -> dt.date | None:
    """RMC ``ddmmyy``; ``None`` for empty. Malformed ones (``2208-1``) raise :class:`FieldError`."""
    if not text:
        return None
    if len(text) != 6 or not _DIGITS.issuperset(text):
        raise FieldError(f"bad date {text!r}")
    try:
        return dt.date(two_digit_year(int(text[4:6])), int(text[2:4]), int(text[0:2]))
    except ValueError as e:
        raise FieldError(f"bad date {text!r}") from e


def zda_date(day: str, month: str, year: str) -> dt.date | None:
    """ZDA's day, month and four-digit year; ``None`` when any is empty."""
    d, m, y = integer(day), integer(month), integer(year)
    if d is None or m is None or y is None:
        return None
    try:
        return dt.date(y, m, d)
    except ValueError as e:
        raise FieldError(f"bad date {day}/{month}/{year}") from e


def char(text: str, allowed: str) -> str | None:
    """A one-letter indicator from ``allowed``, or ``None`` for an empty field."""
    if not text:
        return None
    if len(text) != 1 or text not in allowed:
        raise FieldError(f"bad indicator {text!r}")
    return text
