"""The verifier does not take the registrar's answer on trust: each forgery of an on-path
attacker (or a compromised registrar) is refused, and each test fails if its check is removed."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import tpm
from agent.tpm_device import DEFAULT_LOCATION_KEY_HANDLE
from allowlists import EkTrustStore
from geoattest.errors import (
    AkInvalid,
    EkMismatch,
    EkUntrusted,
    LocationKeyInvalid,
    RegistrarAnswerInvalid,
)
from geoattest.identity_statement import (
    public_key_thumbprint,
    sign_statement,
    statement_body,
)
from geoattest.tls_material import self_signed_server_certificate
from geoattest.wire import AgentView, location_key_qualifying_data
from tests.support.software_pki import SoftwareCa, make_ca
from tests.support.software_tpm import SoftwareTpm
from tpm import ObjectAttributes
from verifier.core.identity import IdentityTrust, check_identity, facts_of

NOW = dt.datetime.now(dt.UTC)
# A real self-signed agent certificate: the verifier refuses to pin anything else (ADR 19).
AGENT_CERTIFICATE = self_signed_server_certificate("edge", ["10.0.0.7"]).certificate.public_bytes(
    serialization.Encoding.DER
)


class Registrar:
    """A registrar's signing key, signing records as the real one does."""

    def __init__(self, *, clock: dt.datetime | None = NOW) -> None:
        """``clock``: the time records are signed at; None signs at the real time (for tests
        that check records with the real clock, however late in a run they come)."""
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.clock = clock

    def view(
        self, node: SoftwareTpm, *, signed_at: dt.datetime | None = None, **changes: object
    ) -> AgentView:
        location = node.create_location_key()
        attest, signature = node.certify(
            DEFAULT_LOCATION_KEY_HANDLE, location_key_qualifying_data("edge", node.ak.name)
        )
        fields: dict[str, object] = {
            "agent_id": "edge",
            "state": "active",
            "ek_fingerprint": "00" * 32,
            "ek_certificate": node.ek_certificate,
            "ek_public": node.ek_public(),
            "ak_public": tpm.encode_tpm2b_public(node.ak),
            "ak_name": node.ak.name.hex(),
            "ek_anchor_subject": "CN=ca",
            "ek_anchor_fingerprint": "00" * 32,
            "tpm_manufacturer": None,
            "tpm_model": None,
            "purchase_order": None,
            "asset_tag": None,
            "enrolled_at": NOW,
            "activated_at": NOW,
            "agent_url": "https://10.0.0.7:9002",
            "tls_certificate": AGENT_CERTIFICATE,
            "location_key_public": location,
            "location_key_certify_attest": attest,
            "location_key_certify_signature": signature,
        }
        fields.update(changes)
        view = AgentView.model_validate(fields)
        return self.sign(view, signed_at)

    def sign(self, view: AgentView, signed_at: dt.datetime | None = None) -> AgentView:
        signed_at = signed_at or self.clock or dt.datetime.now(dt.UTC)
        body = statement_body(
            facts_of(view),
            registrar_key=public_key_thumbprint(self.key.public_key()),
            issued_at=signed_at,
        )
        return view.model_copy(
            update={
                "identity_statement": body,
                "identity_signature": sign_statement(body, self.key),
            }
        )


@pytest.fixture
def ca() -> SoftwareCa:
    return make_ca()


@pytest.fixture
def registrar() -> Registrar:
    return Registrar()


def _trust(ca: SoftwareCa, registrar: Registrar) -> IdentityTrust:
    return IdentityTrust(
        ek_store=EkTrustStore.from_blobs({"root.pem": ca.pem}),
        ek_pins=None,
        registrar_key=registrar.key.public_key(),
    )


def _check(view: AgentView, ca: SoftwareCa, registrar: Registrar) -> None:
    check_identity(view, _trust(ca, registrar), asked_for="edge", now=NOW)


def test_a_genuine_signed_record_passes(ca: SoftwareCa, registrar: Registrar) -> None:
    node = SoftwareTpm(ca)
    checked = check_identity(registrar.view(node), _trust(ca, registrar), asked_for="edge", now=NOW)
    assert checked.ak_public == tpm.encode_tpm2b_public(node.ak)


def test_an_answer_about_another_agent_is_refused(ca: SoftwareCa, registrar: Registrar) -> None:
    view = registrar.view(SoftwareTpm(ca), agent_id="other")
    with pytest.raises(RegistrarAnswerInvalid, match="asked for 'edge'"):
        _check(view, ca, registrar)


def test_an_unsigned_answer_is_refused(ca: SoftwareCa, registrar: Registrar) -> None:
    view = registrar.view(SoftwareTpm(ca)).model_copy(
        update={"identity_statement": None, "identity_signature": None}
    )
    with pytest.raises(RegistrarAnswerInvalid, match="no registrar signature"):
        _check(view, ca, registrar)


def test_an_answer_signed_by_another_key_is_refused(ca: SoftwareCa, registrar: Registrar) -> None:
    forged = Registrar().view(SoftwareTpm(ca))
    with pytest.raises(RegistrarAnswerInvalid, match="not signed by the pinned registrar"):
        _check(forged, ca, registrar)


def test_a_software_ak_swapped_in_on_the_wire_is_refused(
    ca: SoftwareCa, registrar: Registrar
) -> None:
    """The on-path attack of issue 14: a genuine, signed record whose AK is replaced."""
    attacker = SoftwareTpm(ca)
    view = registrar.view(SoftwareTpm(ca))
    swapped = view.model_copy(update={"ak_public": tpm.encode_tpm2b_public(attacker.ak)})
    with pytest.raises(RegistrarAnswerInvalid, match="ak_public_sha256"):
        _check(swapped, ca, registrar)


def test_an_old_signed_answer_replayed_is_refused(ca: SoftwareCa, registrar: Registrar) -> None:
    view = registrar.view(SoftwareTpm(ca), signed_at=NOW - dt.timedelta(minutes=10))
    with pytest.raises(RegistrarAnswerInvalid, match="not fresh"):
        _check(view, ca, registrar)


def test_an_ek_from_a_ca_the_verifier_does_not_trust_is_refused(
    ca: SoftwareCa, registrar: Registrar
) -> None:
    """Even signed by the registrar (a compromised or misconfigured one): the verifier's own
    trust store decides."""
    foreign = SoftwareTpm(make_ca("Other Manufacturer Root"))
    with pytest.raises(EkUntrusted):
        _check(registrar.view(foreign), ca, registrar)


def test_an_ek_public_area_that_is_not_the_certificates_key_is_refused(
    ca: SoftwareCa, registrar: Registrar
) -> None:
    node, other = SoftwareTpm(ca), SoftwareTpm(ca)
    view = registrar.view(node, ek_public=other.ek_public())
    with pytest.raises(EkMismatch, match="not the certificate's key"):
        _check(view, ca, registrar)


def test_an_ak_that_is_not_restricted_is_refused(ca: SoftwareCa, registrar: Registrar) -> None:
    node = SoftwareTpm(ca)
    key = node.ak.public_key
    assert key is not None
    weak = tpm.ak_public(key, attributes=tpm.templates.AK_ATTRIBUTES & ~ObjectAttributes.RESTRICTED)
    view = registrar.view(node, ak_public=tpm.encode_tpm2b_public(weak))
    with pytest.raises(AkInvalid, match="RESTRICTED"):
        _check(view, ca, registrar)


def test_a_location_key_certified_by_another_ak_is_refused(
    ca: SoftwareCa, registrar: Registrar
) -> None:
    node, other = SoftwareTpm(ca), SoftwareTpm(ca)
    genuine = registrar.view(node)
    other.create_location_key()
    attest, signature = other.certify(
        DEFAULT_LOCATION_KEY_HANDLE, location_key_qualifying_data("edge", other.ak.name)
    )
    view = registrar.sign(  # the registrar signs it, yet the certification is another AK's
        genuine.model_copy(
            update={
                "location_key_certify_attest": attest,
                "location_key_certify_signature": signature,
            }
        )
    )
    with pytest.raises(LocationKeyInvalid, match="registrar record"):
        _check(view, ca, registrar)
