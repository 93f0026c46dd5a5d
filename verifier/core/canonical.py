"""RFC 8785 (JCS) canonical JSON at the speed of a C encoder, for documents of any size: a
whole-system runtime policy is 400,000 entries and 46 MB, which the pure-Python ``rfc8785``
package takes seconds to walk, and an evidence record is encoded once per round.

For a subtree of strings, integers (|n| < 2**53), booleans, null, lists and objects whose keys
sort the same by code point as by UTF-16 code unit (JCS sorts by UTF-16 units; they differ only
between a character from U+E000 and one above U+FFFF), JCS and ``msgspec``'s JSON encoder with
sorted keys give the same bytes: the same escapes (``\\b \\t \\n \\f \\r``, ``\\u00xx`` for the
other controls, ``\\"`` and ``\\\\``), every other character as itself in UTF-8, keys in the
same order (so does ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)``,
eight to ten times slower on a record). Such subtrees go to the encoder whole; objects and lists
that hold anything else (floats, whose JCS form is ECMAScript's number-to-string, or other
keys) are assembled member by member here, and every such leaf goes to ``rfc8785.dumps``. The
result is byte-for-byte ``rfc8785.dumps(value)``; a hypothesis test holds the two equal.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
import rfc8785

from geoattest.wire import JsonValue

_MAX_SAFE = 2**53
_FIRST_ORDER_CHANGING = "\ue000"  # from here on, UTF-16 order may differ from code points


def canonical_json(value: JsonValue) -> bytes:
    """The RFC 8785 bytes of ``value``. ``ValueError`` (``rfc8785.CanonicalizationError`` or
    ``UnicodeEncodeError``) for what JSON cannot carry: NaN, infinity, integers beyond 2**53
    where the reference refuses them, lone surrogates."""
    return _encode(value)


def plain_canonical_json(value: JsonValue) -> bytes:
    """The RFC 8785 bytes of ``value`` that its builder guarantees *plain* (what ``_plain``
    checks: strings, integers below 2**53, booleans, null, lists, objects with ASCII keys), with
    the check skipped: the C encoder alone. For builders on a hot path whose output is plain by
    construction, each held equal to ``rfc8785`` by its own test (evidence records, once per
    round). ``UnicodeEncodeError`` (a ``ValueError``) for lone surrogates."""
    return _ENCODER.encode(value)


def _plain_subclass(value: object) -> object:
    # msgspec encodes enums by value but refuses other subclasses of ``str`` and ``int``, which
    # ``_plain`` lets through as the JSON values they are.
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    raise TypeError(f"{type(value).__name__} is not a JSON value")


_ENCODER = msgspec.json.Encoder(order="sorted", enc_hook=_plain_subclass)


def _encode(value: JsonValue) -> bytes:
    if _plain(value):
        return _ENCODER.encode(value)
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            return rfc8785.dumps(value)  # the reference names the problem
        members = sorted(value.items(), key=lambda item: item[0].encode("utf-16-be"))
        return b"{" + b",".join(_encode(k) + b":" + _encode(v) for k, v in members) + b"}"
    if isinstance(value, list | tuple):
        return b"[" + b",".join(_encode(item) for item in value) + b"]"
    return rfc8785.dumps(value)  # floats, huge integers: the reference


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
