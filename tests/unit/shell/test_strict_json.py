"""The strict JSON reader: each rule refused with ``malformed_request`` naming it, and what it
accepts is exactly what ``json.loads`` reads (a hypothesis test over JSON values)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geoattest.errors import MalformedRequest
from geoattest.strict_json import MAX_DEPTH, MAX_SAFE_INTEGER, loads_object, loads_strict


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b'{"a": 1, "a": 2}', "duplicate names"),
        (b'{"x": {"policy": "p", "policy": "q"}}', "duplicate names"),
        (b'{"a": NaN}', "NaN is not a JSON number"),
        (b'{"a": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"a": 1e400}', "out of range"),
        (b'{"a": -1e400}', "out of range"),
        (b'{"a": 9007199254740992}', "beyond"),
        (b'{"a": -9007199254740992}', "beyond"),
        (b'{"a": ' + b"1" * 5000 + b"}", "beyond"),
        (b'{"a": "\\ud800"}', "lone surrogate"),
        (b'{"\\udfff": 1}', "lone surrogate"),
        (b'{"a": "x\\udc00y"}', "lone surrogate"),
        (b'{"a": "\xff"}', "not UTF-8"),
        (b"\xff\xfe{\x00}\x00", "not UTF-8"),  # UTF-16 is not accepted in place of UTF-8
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nests deeper"),
        (b"[" * 100_000, "nests deeper"),  # past the parser's own recursion limit
        (b'{"a": 1', "not valid JSON"),
        (b"", "not valid JSON"),
        (b'{"a": "tab\there"}', "not valid JSON"),  # raw control characters in a string
    ],
)
def test_each_rule_is_refused_by_name(raw: bytes, says: str) -> None:
    with pytest.raises(MalformedRequest, match=says):
        loads_strict(raw)


def test_a_lone_surrogate_in_text_already_decoded_is_refused() -> None:
    with pytest.raises(MalformedRequest, match="lone surrogate"):
        loads_strict('{"a": ["ok", "\ud800"]}')


def test_depth_is_checked_below_wide_levels_too() -> None:
    """The depth walk goes a level at a time; a deep branch among many shallow ones is found."""
    deep = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    wide = ", ".join(f'"k{i}": ["x"]' for i in range(1000))
    with pytest.raises(MalformedRequest, match="nests deeper"):
        loads_strict("{" + wide + ', "z": {"y": ' + deep + "}}")
    assert loads_object("{" + wide + ', "z": ' + deep + "}")["z"] == json.loads(deep)


def test_the_limits_themselves_are_accepted() -> None:
    deepest = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert loads_strict(deepest) == json.loads(deepest)
    body = loads_object(
        f'{{"max": {MAX_SAFE_INTEGER}, "min": {-MAX_SAFE_INTEGER}, "pair": "\\ud83d\\ude00"}}'
    )
    assert body == {"max": MAX_SAFE_INTEGER, "min": -MAX_SAFE_INTEGER, "pair": "\U0001f600"}


def test_a_byte_order_mark_is_ignored_and_utf8_names_kept() -> None:
    assert loads_object('\ufeff{"caf\u00e9": 1}'.encode()) == {"caf\u00e9": 1}


@pytest.mark.parametrize("raw", ["[1]", '"s"', "3", "null", "true"])
def test_a_body_must_be_an_object(raw: str) -> None:
    with pytest.raises(MalformedRequest, match="must be a JSON object"):
        loads_object(raw)


def test_messages_quote_client_text_bounded_and_ascii() -> None:
    with pytest.raises(MalformedRequest) as caught:
        loads_strict('{"' + "\u00e9" * 500 + '": 1, "' + "\u00e9" * 500 + '": 2}')
    assert "duplicate names" in caught.value.message
    assert len(caught.value.message) < 300
    assert caught.value.message.isascii()
    many = ", ".join(f'"n{i}": 1, "n{i}": 2' for i in range(5000))
    with pytest.raises(MalformedRequest) as caught:
        loads_strict("{" + many + "}")
    assert "duplicate names" in caught.value.message
    assert len(caught.value.message) < 300
    assert caught.value.message.isascii()


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8")),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(st.characters(codec="utf-8")), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(_values)
def test_what_it_accepts_equals_json_loads(value: object) -> None:
    text = json.dumps(value)
    assert loads_strict(text) == json.loads(text)
    assert loads_strict(text.encode()) == json.loads(text)
