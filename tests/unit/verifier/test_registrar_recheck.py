"""The verifier re-checks the registrar's answer: a tampered record (wrong AK kind, location key
not certified by the AK) is refused instead of trusted."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

import tpm
from geoattest.errors import AkInvalid, LocationKeyInvalid
from geoattest.wire import AgentView, location_key_qualifying_data
from tests.unit.tpm.softak import SoftwareAk
from tpm import ObjectAttributes
from verifier.operations import _recheck


def _view(ak: SoftwareAk, **changes: object) -> AgentView:
    location = tpm.location_key_public(ec.generate_private_key(ec.SECP256R1()).public_key())
    attest, signature = ak.certify(location, location_key_qualifying_data("edge", ak.public.name))
    fields: dict[str, object] = {
        "agent_id": "edge",
        "state": "active",
        "ek_fingerprint": "00" * 32,
        "ek_certificate": b"cert",
        "ek_public": b"ek",
        "ak_public": tpm.encode_tpm2b_public(ak.public),
        "ak_name": ak.public.name.hex(),
        "ek_anchor_subject": "CN=ca",
        "ek_anchor_fingerprint": "00" * 32,
        "tpm_manufacturer": None,
        "tpm_model": None,
        "purchase_order": None,
        "asset_tag": None,
        "enrolled_at": datetime(2026, 1, 1, tzinfo=UTC),
        "activated_at": None,
        "location_key_public": tpm.encode_tpm2b_public(location),
        "location_key_certify_attest": attest,
        "location_key_certify_signature": signature,
    }
    fields.update(changes)
    return AgentView.model_validate(fields)


def test_genuine_record_passes() -> None:
    ak = SoftwareAk.ecc()
    view = _view(ak)
    assert view.ak_public is not None
    _recheck("edge", view.ak_public, view)


def test_ak_that_is_not_restricted_is_refused() -> None:
    ak = SoftwareAk.ecc()
    key = ak.public.public_key
    assert key is not None
    not_restricted = tpm.templates.AK_ATTRIBUTES & ~ObjectAttributes.RESTRICTED
    weak = tpm.ak_public(key, attributes=not_restricted)
    view = _view(ak)
    with pytest.raises(AkInvalid, match="RESTRICTED"):
        _recheck("edge", tpm.encode_tpm2b_public(weak), view)


def test_location_key_certified_by_another_ak_is_refused() -> None:
    ak, other = SoftwareAk.ecc(), SoftwareAk.ecc()
    view = _view(other)  # the certification was made by another AK
    with pytest.raises(LocationKeyInvalid, match="registrar record"):
        _recheck("edge", tpm.encode_tpm2b_public(ak.public), view)


def test_location_key_without_its_certification_is_refused() -> None:
    ak = SoftwareAk.ecc()
    view = _view(ak, location_key_certify_attest=None, location_key_certify_signature=None)
    assert view.ak_public is not None
    with pytest.raises(LocationKeyInvalid, match="without its certification"):
        _recheck("edge", view.ak_public, view)
