"""Query arguments read strictly, and described from the same objects in the OpenAPI document.

A view declares ``LIMIT = IntArg(name="limit", default=100, low=1, high=1000)`` once, reads it
with ``LIMIT.read()`` and lists it in ``@documented(query=(LIMIT,))``: the bounds the document
states are the bounds the view enforces. A value outside them is a 400 ``malformed_request``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Protocol

from flask import request

from geoattest.errors import MalformedRequest

__all__ = ["IntArg", "QueryArg", "TimeArg", "int_arg", "time_arg"]

_DIGITS = re.compile(r"[0-9]{1,19}")
_FIRST_YEAR, _LAST_YEAR = 1970, 9998


class QueryArg(Protocol):
    """What the OpenAPI document needs of a query argument."""

    @property
    def name(self) -> str: ...

    def openapi_parameter(self) -> dict[str, object]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class IntArg:
    name: str
    default: int
    low: int
    high: int
    description: str = ""

    def read(self) -> int:
        return int_arg(self.name, self.default, self.low, self.high)

    def openapi_parameter(self) -> dict[str, object]:
        schema = {"type": "integer", "minimum": self.low, "maximum": self.high}
        return _parameter(self.name, {**schema, "default": self.default}, self.description)


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeArg:
    name: str
    description: str = ""

    def read(self) -> dt.datetime | None:
        return time_arg(self.name)

    def openapi_parameter(self) -> dict[str, object]:
        return _parameter(self.name, {"type": "string", "format": "date-time"}, self.description)


def int_arg(name: str, default: int, low: int, high: int) -> int:
    """Query argument ``name`` as an integer in ``low..high`` (ASCII digits only: ``str.isdigit``
    also accepts ``²``, which ``int`` refuses); ``MalformedRequest`` otherwise."""
    raw = request.args.get(name)
    if raw is None:
        return default
    if _DIGITS.fullmatch(raw) is None or not low <= int(raw) <= high:
        raise MalformedRequest(f"{name} must be an integer in {low}..{high}")
    return int(raw)


def time_arg(name: str) -> dt.datetime | None:
    """Query argument ``name`` as an aware UTC time (ISO 8601; naive means UTC), years
    1970..9998; ``MalformedRequest`` otherwise."""
    raw = request.args.get(name)
    if raw is None:
        return None
    problem = f"{name} must be an ISO 8601 time, e.g. 2026-12-01T10:00:00Z"
    try:
        moment = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        moment = moment.astimezone(dt.UTC)
    except (ValueError, OverflowError) as e:
        raise MalformedRequest(problem) from e
    if not _FIRST_YEAR <= moment.year <= _LAST_YEAR:
        raise MalformedRequest(f"{problem} (years {_FIRST_YEAR}..{_LAST_YEAR})")
    return moment


def _parameter(name: str, schema: dict[str, object], description: str) -> dict[str, object]:
    parameter: dict[str, object] = {"name": name, "in": "query", "required": False}
    parameter["schema"] = schema
    if description:
        parameter["description"] = description
    return parameter
