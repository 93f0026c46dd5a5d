"""The registrar core on a real SQLite database with software keys: timing rules that a live
registrar cannot be made to show quickly (challenge expiry), and the records kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

import tpm
from allowlists import EkTrustStore
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
def registry(tmp_path: Path, clock: _Clock, ca: SoftwareCa) -> Registry:
    engine = make_engine(f"sqlite:///{tmp_path / 'registrar.sqlite'}")
    migrate(engine)
    trust = TrustPolicy(
        store=EkTrustStore.from_blobs({"root.pem": ca.pem}),
        pins=None,
        challenge_ttl=timedelta(minutes=5),
    )
    return Registry(session_factory(engine), trust, clock=clock)


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
