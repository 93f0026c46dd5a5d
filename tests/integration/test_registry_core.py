"""The registrar core on a real database (SQLite and PostgreSQL) with software keys: timing rules
that a live registrar cannot be made to show quickly (challenge expiry), and the records kept."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

import tpm
from allowlists import EkTrustStore
from allowlists.pins import parse_pins
from geoattest.db import make_engine, migrate, session_factory
from geoattest.errors import ActivationFailed
from registrar.registry import EnrolmentEvidence, Registry, TrustPolicy
from tests.support.software_pki import SoftwareCa, make_ca


class _Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> _Clock:
    return _Clock()


@pytest.fixture
def ca() -> SoftwareCa:
    return make_ca()


@pytest.fixture
def registry(database_url: str, clock: _Clock, ca: SoftwareCa) -> Iterator[Registry]:
    engine = make_engine(database_url)
    migrate(engine)
    trust = TrustPolicy(
        store=EkTrustStore.from_blobs({"root.pem": ca.pem}),
        pins=None,
        challenge_ttl=timedelta(minutes=5),
    )
    yield Registry(session_factory(engine), trust, clock=clock)
    engine.dispose()


def _evidence(ca: SoftwareCa, agent_id: str) -> EnrolmentEvidence:
    ek_key = ec.generate_private_key(ec.SECP256R1())
    ak_key = ec.generate_private_key(ec.SECP256R1())
    ek_cert = ca.issue_ek_certificate(ek_key.public_key())
    return EnrolmentEvidence(
        agent_id=agent_id,
        ek_certificate=ek_cert,
        ek_public=tpm.encode_tpm2b_public(tpm.ek_public(ek_key.public_key())),
        ak_public=tpm.encode_tpm2b_public(tpm.ak_public(ak_key.public_key())),
        request_digest=bytes(32),
    )


def test_challenge_expires(registry: Registry, clock: _Clock, ca: SoftwareCa) -> None:
    issued = registry.enrol(_evidence(ca, "slow"))
    assert issued.expires_at == clock.now + timedelta(minutes=5)
    clock.now += timedelta(minutes=5, seconds=1)
    with pytest.raises(ActivationFailed, match="expired"):
        registry.activate("slow", b"\x00" * 32)
    with pytest.raises(ActivationFailed, match="no open challenge"):
        registry.activate("slow", b"\x00" * 32)


def test_pending_record_keeps_the_ek_validation_result(registry: Registry, ca: SoftwareCa) -> None:
    registry.enrol(_evidence(ca, "recorded"))
    identity = registry.get("recorded")
    assert identity.state == "pending"
    assert identity.ak_public is None
    assert identity.ek_anchor_subject == "CN=Test TPM Manufacturer Root"
    assert identity.tpm_model == "TESTTPM"


def test_long_names_from_certificates_and_pins_are_kept_whole(
    database_url: str, clock: _Clock
) -> None:
    """Names the registrar does not choose (the CA's subject, the TPM model in the EK
    certificate, the pins file's purchase order and asset tag) have no length limit of ours:
    PostgreSQL enforces VARCHAR lengths that SQLite ignores."""
    ca = make_ca(units=[f"Division {n} of a very large TPM manufacturing group" for n in range(12)])
    ek_key = ec.generate_private_key(ec.SECP256R1())
    ek_cert = ca.issue_ek_certificate(ek_key.public_key(), model="M" * 300)
    fingerprint = hashlib.sha256(ek_cert).hexdigest()
    pins = parse_pins(
        f'[[pin]]\nsha256 = "{fingerprint}"\npurchase_order = "{"P" * 300}"\n'
        f'asset_tag = "{"A" * 300}"\n'
    )
    engine = make_engine(database_url)
    migrate(engine)
    trust = TrustPolicy(
        store=EkTrustStore.from_blobs({"root.pem": ca.pem}),
        pins=pins,
        challenge_ttl=timedelta(minutes=5),
    )
    registry = Registry(session_factory(engine), trust, clock=clock)
    registry.enrol(
        EnrolmentEvidence(
            agent_id="long-names",
            ek_certificate=ek_cert,
            ek_public=tpm.encode_tpm2b_public(tpm.ek_public(ek_key.public_key())),
            ak_public=tpm.encode_tpm2b_public(
                tpm.ak_public(ec.generate_private_key(ec.SECP256R1()).public_key())
            ),
            request_digest=bytes(32),
        )
    )
    identity = registry.get("long-names")
    engine.dispose()
    assert len(identity.ek_anchor_subject) > 600
    assert identity.ek_anchor_subject == ca.certificate.subject.rfc4514_string()
    assert (identity.tpm_model, identity.purchase_order, identity.asset_tag) == (
        "M" * 300,
        "P" * 300,
        "A" * 300,
    )


def test_timestamps_read_back_in_utc_whatever_the_server_zone(
    registry: Registry, clock: _Clock, ca: SoftwareCa
) -> None:
    """The test PostgreSQL cluster runs in UTC+05:45: what the registrar reads back must still
    be UTC (the API prints these)."""
    issued = registry.enrol(_evidence(ca, "zoned"))
    enrolled = registry.get("zoned").enrolled_at
    assert enrolled.utcoffset() == timedelta(0)
    assert enrolled == clock.now
    assert issued.expires_at.utcoffset() == timedelta(0)
