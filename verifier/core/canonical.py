"""RFC 8785 (JCS) canonical JSON at the speed of the C ``json`` encoder, for documents of any
size: a whole-system runtime policy is 400,000 entries and 46 MB, which the pure-Python
``rfc8785`` package takes seconds to walk.

For a subtree of strings, integers (|n| < 2**53), booleans, null, lists and objects whose keys
sort the same by code point as by UTF-16 code unit (JCS sorts by UTF-16 units; they differ only
between a character from U+E000 and one above U+FFFF), JCS and ``json.dumps(sort_keys=True,
separators=(",", ":"), ensure_ascii=False)`` give the same text: the same escapes (``\\b \\t \\n
\\f \\r``, ``\\u00xx`` for the other controls, ``\\"`` and ``\\\\``), every other character as
itself, keys in the same order. Such subtrees go to ``json.dumps`` whole; objects and lists
that hold anything else (floats, whose JCS form is ECMAScript's number-to-string, or other
keys) are assembled member by member here, and every such leaf goes to ``rfc8785.dumps``. The
result is byte-for-byte ``rfc8785.dumps(value)``; a hypothesis test holds the two equal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import rfc8785

from geoattest.wire import JsonValue

_MAX_SAFE = 2**53
_FIRST_ORDER_CHANGING = "\ue000"  # from here on, UTF-16 order may differ from code points


def canonical_json(value: JsonValue) -> bytes:
    """The RFC 8785 bytes of ``value``. ``ValueError`` (``rfc8785.CanonicalizationError`` or
    ``UnicodeEncodeError``) for what JSON cannot carry: NaN, infinity, integers beyond 2**53
    where the reference refuses them, lone surrogates."""
    return _encode(value).encode("utf-8")


def plain_canonical_json(value: JsonValue) -> bytes:
    """The RFC 8785 bytes of ``value`` that its builder guarantees *plain* (what ``_plain``
    checks: strings, integers below 2**53, booleans, null, lists, objects with ASCII keys), with
    the check skipped: the C encoder alone. For builders on a hot path whose output is plain by
    construction, each held equal to ``rfc8785`` by its own test (evidence records, once per
    round). ``UnicodeEncodeError`` (a ``ValueError``) for lone surrogates."""
    return _dumps(value).encode("utf-8")


def _dumps(value: JsonValue) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _encode(value: JsonValue) -> str:
    if _plain(value):
        return _dumps(value)
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            return rfc8785.dumps(value).decode("utf-8")  # the reference names the problem
        members = sorted(value.items(), key=lambda item: item[0].encode("utf-16-be"))
        return "{" + ",".join(f"{_encode(k)}:{_encode(v)}" for k, v in members) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(item) for item in value) + "]"
    return rfc8785.dumps(value).decode("utf-8")  # floats, huge integers: the reference


def _plain(value: JsonValue) -> bool:
    """True when ``json.dumps`` gives the JCS text of the whole of ``value``."""
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str) or item is None or isinstance(item, bool):
            continue
        if isinstance(item, dict):
            for key in item:
                if not isinstance(key, str):
                    return False
                if not key.isascii() and max(key) >= _FIRST_ORDER_CHANGING:
                    return False
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, int):
            if not -_MAX_SAFE < item < _MAX_SAFE:
                return False
        else:
            return False  # floats and anything else: the reference encoder decides
    return True
