"""The registrar's signed identity record (the interface issue 14 implements), held to the
bundle's identity files."""

from __future__ import annotations

import datetime as dt

import pytest

from geoattest.errors import BundleInvalid
from verifier.export import layout
from verifier.export.identity_record import check_identity_record, encode_identity_record
from verifier.export.layout import Identity

AGENT = "edge-1"
AK_NAME = bytes.fromhex("000b" + "11" * 32)
FILES = {
    layout.identity_path(AGENT, Identity.EK_CERTIFICATE): b"ek der",
    layout.ak_path(AGENT, AK_NAME): b"ak tpm2b",
    layout.identity_path(AGENT, Identity.LOCATION_KEY): b"location tpm2b",
    layout.identity_path(AGENT, Identity.CERTIFY_ATTEST): b"attest",
    layout.identity_path(AGENT, Identity.CERTIFY_SIGNATURE): b"signature",
}


def _record(**change: object) -> bytes:
    fields: dict[str, object] = {
        "agent_id": AGENT,
        "ek_certificate": b"ek der",
        "ak_public": b"ak tpm2b",
        "ak_name": AK_NAME,
        "activated_at": dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
        "location_key": (b"location tpm2b", b"attest", b"signature"),
    }
    fields.update(change)
    return encode_identity_record(**fields)  # type: ignore[arg-type]  # test kwargs


def test_a_record_of_the_bundles_identity_holds() -> None:
    check_identity_record(_record(), AGENT, FILES)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"agent_id": "edge-2"}, "agent"),
        ({"ek_certificate": b"another ek"}, "another EK"),
        ({"ak_public": b"another ak"}, "an AK the bundle does not hold"),
        ({"location_key": (b"location tpm2b", b"attest", b"forged")}, "another location key"),
    ],
)
def test_a_record_naming_something_else_is_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(BundleInvalid, match=message):
        check_identity_record(_record(**change), AGENT, FILES)


def test_a_record_not_in_canonical_form_is_refused() -> None:
    with pytest.raises(BundleInvalid, match="canonical"):
        check_identity_record(_record().replace(b",", b", ", 1), AGENT, FILES)
