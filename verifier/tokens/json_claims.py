"""Typed readers of a token's JSON claims: each returns the value as its type or raises
``ValueError`` naming the claim (a payload is untrusted until it is read). Pure."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping


def is_whole(value: object) -> bool:
    """An int (not a bool) in ``0 .. 2**40``: seconds, or a record's seq."""
    return type(value) is int and 0 <= value < 2**40


def _malformed(what: str) -> ValueError:
    return ValueError(what)


def claim_object(body: Mapping[str, object], name: str) -> dict[str, object]:
    return as_object(body.get(name), name)


def as_object(value: object, name: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise _malformed(f"claim {name} must be a JSON object")
    return value


def claim_str(body: Mapping[str, object], name: str) -> str:
    return as_str(body.get(name), name)


def as_str(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise _malformed(f"claim {name} must be a string")
    return value


def claim_int(body: Mapping[str, object], name: str) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**40:
        raise _malformed(f"claim {name} must be a whole number of seconds (or a count)")
    return value


def claim_number(body: Mapping[str, object], name: str) -> float:
    value = body.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _malformed(f"claim {name} must be a number")
    if not math.isfinite(value):  # JSON parsers take NaN and Infinity; no coordinate is either
        raise _malformed(f"claim {name} must be a finite number")
    return float(value)


def utc_time(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)
