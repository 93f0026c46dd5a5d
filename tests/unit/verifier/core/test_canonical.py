"""``verifier.core.canonical.canonical_json`` is RFC 8785: the same bytes as the ``rfc8785``
reference for every JSON value, with the fast path taken and not taken."""

from __future__ import annotations

import math

import pytest
import rfc8785
from hypothesis import example, given
from hypothesis import strategies as st

from geoattest.wire import JsonValue
from verifier.core.canonical import canonical_json, plain_canonical_json

# Keys from the whole of Unicode, weighted towards the characters where code-point order and
# UTF-16 order part (U+E000-U+FFFF against astral ones); floats of every size (ECMAScript's
# number form differs from Python's repr in exponents and integral values).
_keys = st.text(
    alphabet=st.characters(exclude_categories=["Cs"])
    | st.sampled_from(["\ue000", "\uffff", "\U0001f600", "\U00010000", "é", "a"]),
    max_size=4,
)
_floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, -0.0, 1.0, 30.0, 1e21, 1e-7, 123456789012345680.0, 5e-324, 0.1]
)
_scalars = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | _floats | st.text()
_json_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_keys, children, max_size=5),
    max_leaves=30,
)


def _reference(value: JsonValue) -> bytes | None:
    try:
        return rfc8785.dumps(value)
    except ValueError:
        return None


@given(_json_values)
@example({"\ue000": 1, "\U0001f600": 2})  # UTF-16 puts the astral key first
@example({"digests": {"/usr/bin/a": ["sha256:00"]}, "max_age_seconds": 30.0})
@example({"a": [1, 2.5, {"b": 1e21}], "c": "\u2028\x7f\x1f"})
def test_the_fast_encoder_is_rfc8785(value: JsonValue) -> None:
    expected = _reference(value)
    if expected is None:  # lone surrogates: neither can carry them
        with pytest.raises(ValueError):  # noqa: PT011  # UnicodeEncodeError or the reference's
            canonical_json(value)
        return
    assert canonical_json(value) == expected


@pytest.mark.parametrize("bad", [math.nan, math.inf, {"x": [math.nan]}, {"x": -math.inf}])
def test_what_json_cannot_carry_is_refused(bad: JsonValue) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  # rfc8785.CanonicalizationError
        canonical_json(bad)


def test_a_policy_sized_document_takes_the_fast_path() -> None:
    digests = {f"/usr/lib/f{i}.so": [f"sha256:{i:064x}"] for i in range(50_000)}
    runtime: JsonValue = {"digests": digests, "excludes": []}
    document: JsonValue = {"runtime_policy": runtime, "max_age_seconds": 30.5}
    assert canonical_json(document) == rfc8785.dumps(document)


# What ``plain_canonical_json``'s callers build: any text (controls, U+2028, astral characters)
# in values, ASCII keys, integers within 2**53, and the str/int subclasses builders pass through
# (enum members, and subclasses the C encoder would refuse without the hook).
class _Name(str):
    pass


class _Count(int):
    pass


_plain_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.text(alphabet=st.characters(exclude_categories=["Cs"]))
    | st.builds(_Name, st.text(max_size=3))
    | st.builds(_Count, st.integers(0, 99))
)
_plain_values = st.recursive(
    _plain_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(alphabet=st.characters(max_codepoint=127)), children, max_size=5)
    ),
    max_leaves=30,
)


@given(_plain_values)
@example({"b": '\x1f\u2028\x7f"\\\U0001f600', "a": [_Name("x"), _Count(3), True, None]})
def test_the_plain_encoder_is_rfc8785(value: JsonValue) -> None:
    assert plain_canonical_json(value) == rfc8785.dumps(value)


def test_the_plain_encoder_refuses_what_is_not_json() -> None:
    with pytest.raises(TypeError, match="object is not a JSON value"):
        plain_canonical_json({"a": object()})  # type: ignore[dict-item]
