"""``reloaded_document`` is what a worker reads back from a policy's canonical bytes, without
making a whole-system runtime policy take the trip."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geoattest.errors import PolicyInvalid
from geoattest.wire import PolicyDocument
from verifier.core.policy import canonical_document, policy_from_document, reloaded_document

# JSON without floats, as a valid runtime policy is (its only number is ``version``).
_runtime_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=5)
    ),
    max_leaves=25,
)


@given(st.dictionaries(st.text(max_size=6), _runtime_values, max_size=5))
def test_a_float_free_runtime_policy_reads_back_as_sent(runtime: dict[str, object]) -> None:
    document = PolicyDocument.model_validate({"runtime_policy": runtime, "max_age_seconds": 30.0})
    full_trip = PolicyDocument.model_validate_json(canonical_document(document))
    assert reloaded_document(document) == full_trip
    assert json.loads(canonical_document(document))["runtime_policy"] == runtime


def test_the_fields_around_it_make_the_real_trip() -> None:
    document = PolicyDocument.model_validate(
        {"boot_pcrs": {"sha256": {"0": "00" * 32}}, "boot_log": True, "max_age_seconds": 1e-7}
    )
    assert reloaded_document(document) == PolicyDocument.model_validate_json(
        canonical_document(document)
    )


def test_a_float_in_a_runtime_policy_is_refused_before_any_trip() -> None:
    """The one value the shortcut would read back differently (``1.0`` as ``1``) never passes."""
    document = PolicyDocument.model_validate(
        {"runtime_policy": {"version": 1.0, "digests": {}}, "ima_banks": ["sha256"]}
    )
    with pytest.raises(PolicyInvalid, match="version"):
        policy_from_document("p", 0, reloaded_document(document), None)
    assert PolicyDocument.model_validate_json(canonical_document(document)).runtime_policy == {
        "version": 1,
        "digests": {},
    }
