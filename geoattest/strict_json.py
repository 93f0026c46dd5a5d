"""The one JSON reader for request bodies: JSON whose meaning does not depend on the parser.

Every service parses request bodies here (``geoattest.http.parse_body`` and the registrar's
enrolment reader), so what a view validates is exactly what the client sent and what is stored:

- UTF-8 only (RFC 8259 §8.1), and no lone surrogate in a string or a name (``"\\ud800"`` is
  valid JSON text but no Unicode string: it cannot be stored, logged or canonicalised);
- no duplicate names in an object (the value kept would depend on the parser);
- no ``NaN``/``Infinity`` and no number that overflows to infinity (``1e400``);
- integers within ±(2**53 - 1) (I-JSON, RFC 7493 §2.2): beyond, peers disagree on the value;
- at most ``MAX_DEPTH`` nested arrays and objects (nothing we accept nests deeper; a deep
  document would otherwise exhaust the parser's recursion).

Each refusal is a ``MalformedRequest`` (400 ``malformed_request``) naming the rule. This module
imports only the error hierarchy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from itertools import chain
from typing import TypeAlias

from geoattest.errors import MalformedRequest

__all__ = ["MAX_DEPTH", "MAX_SAFE_INTEGER", "JsonValue", "loads_object", "loads_strict"]

MAX_DEPTH = 32
MAX_SAFE_INTEGER = 2**53 - 1

JsonValue: TypeAlias = (
    bool | int | float | str | Sequence["JsonValue"] | Mapping[str, "JsonValue"] | None
)


class _Refused(ValueError):
    """A rule of this module, raised from inside the parser's hooks."""


def loads_strict(raw: bytes | str) -> JsonValue:
    """Parse ``raw`` under the rules of the module docstring; ``MalformedRequest`` otherwise."""
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise MalformedRequest(
                f"request body is not UTF-8: {e.reason} at byte {e.start}"
            ) from e
        text = text.removeprefix("\ufeff")
    else:
        text = raw
    try:
        value: JsonValue = json.loads(
            text,
            object_pairs_hook=_unique_names,
            parse_constant=_no_constant,
            parse_float=_finite_float,
            parse_int=_safe_int,
        )
    except RecursionError as e:
        raise MalformedRequest(f"request body nests deeper than {MAX_DEPTH} levels") from e
    except _Refused as e:
        raise MalformedRequest(f"request body refused: {e}") from e
    except ValueError as e:  # JSONDecodeError
        raise MalformedRequest(f"request body is not valid JSON: {e}") from e
    _check_tree(value, strings=_may_hold_lone_surrogates(text))
    return value


def loads_object(raw: bytes | str) -> dict[str, JsonValue]:
    """``loads_strict`` of a body that must be a JSON object."""
    value = loads_strict(raw)
    if not isinstance(value, dict):
        raise MalformedRequest(f"request body must be a JSON object, not {_kind(value)}")
    return value


def _unique_names(pairs: list[tuple[str, JsonValue]]) -> dict[str, JsonValue]:
    body = dict(pairs)
    if len(body) != len(pairs):
        names = [name for name, _ in pairs]
        repeated = sorted({name for name in names if names.count(name) > 1})
        shown = ", ".join(map(_shown, repeated[:3])) + (", ..." if len(repeated) > 3 else "")
        raise _Refused(f"duplicate names in an object: {shown}")
    return body


def _no_constant(name: str) -> object:
    raise _Refused(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"number {_shown(text)} is out of range")
    return value


def _safe_int(text: str) -> int:
    if len(text.lstrip("-")) > 16:  # before int(): a 4,000-digit integer costs real time
        raise _Refused(f"integer {_shown(text)} is beyond ±(2**53 - 1)")
    value = int(text)
    if abs(value) > MAX_SAFE_INTEGER:
        raise _Refused(f"integer {_shown(text)} is beyond ±(2**53 - 1)")
    return value


def _may_hold_lone_surrogates(text: str) -> bool:
    """False when no parsed string can hold a lone surrogate: the text itself has none (it
    encodes as UTF-8) and no ``\\u`` escape could make one. A whole-system policy (10^6
    strings, none escaped) then skips the per-string walk."""
    if "\\u" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_tree(value: JsonValue, *, strings: bool = True) -> None:
    """Depth and (when ``strings``) lone surrogates, iteratively (never recursion on client
    input)."""
    if not strings:
        _check_depth(value)
        return
    stack: list[tuple[JsonValue, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise MalformedRequest(f"request body nests deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                for name, member in item.items():
                    _check_text(name)
                    stack.append((member, depth + 1))
            else:
                stack.extend((member, depth + 1) for member in item)


def _check_depth(value: JsonValue) -> None:
    """The depth alone, a level at a time: one pass over each level's members, with no
    per-container Python frame (a policy's 10^5 digest lists are one level)."""
    level = [value] if isinstance(value, dict | list) else []
    depth = 1
    while level:
        if depth > MAX_DEPTH:
            raise MalformedRequest(f"request body nests deeper than {MAX_DEPTH} levels")
        members = chain.from_iterable(
            item.values() if isinstance(item, dict) else item for item in level
        )
        level = [member for member in members if isinstance(member, dict | list)]
        depth += 1


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise MalformedRequest(
            f"request body holds a lone surrogate ({text[e.start]!a}) in a string: not Unicode text"
        ) from e


def _kind(value: JsonValue) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return "a number" if not isinstance(value, bool) else "a boolean"


def _shown(text: str) -> str:
    """``text`` quoted for a message, bounded and ASCII-escaped (it comes from the client)."""
    return ascii(text[:40]) + ("..." if len(text) > 40 else "")
