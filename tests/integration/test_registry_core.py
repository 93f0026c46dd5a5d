"""The registrar core on a real database (SQLite and PostgreSQL) with software keys: timing rules
that a live registrar cannot be made to show quickly (challenge expiry), capacity, and the records
kept.

The registry's random source is replaced by a known one, so that the test knows the secret the
challenge carries (what a genuine TPM would recover) without a TPM.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine

import tpm
from allowlists import EkTrustStore
from allowlists.pins import parse_pins
from geoattest.db import make_engine, migrate, session_factory
from geoattest.errors import ActivationFailed, AgentNotActive, NotFound, RegistrarBusy
from geoattest.wire import activation_proof
from registrar.proof_check import ProofChecker
from registrar.registry import EnrolmentEvidence, Registry, TrustPolicy
from tests.support.software_pki import SoftwareCa, make_ca

SECRET = bytes(range(32))


class _Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class _KnownRandom:
    """Secrets are ``SECRET``; enrolment ids count up (they must be unique, not secret here)."""

    def __init__(self) -> None:
        self.ids = 0

    def __call__(self, size: int) -> bytes:
        if size == len(SECRET):
            return SECRET
        self.ids += 1
        return self.ids.to_bytes(size, "big")


@pytest.fixture
def clock() -> _Clock:
    return _Clock()


@pytest.fixture
def ca() -> SoftwareCa:
    return make_ca()


def _registry(
    database_url: str, tmp_path: Path, clock: _Clock, ca: SoftwareCa, **options: int
) -> Registry:
    engine = make_engine(database_url)
    _ENGINES.append(engine)
    migrate(engine)
    trust = TrustPolicy(
        store=EkTrustStore.from_blobs({"root.pem": ca.pem}),
        pins=None,
        challenge_ttl=timedelta(minutes=5),
    )
    checker = ProofChecker.load(tmp_path / "state")
    return Registry(
        session_factory(engine), trust, checker, clock=clock, random_bytes=_KnownRandom(), **options
    )


_ENGINES: list[Engine] = []


@pytest.fixture
def registry(
    database_url: str, tmp_path: Path, clock: _Clock, ca: SoftwareCa
) -> Iterator[Registry]:
    yield _registry(database_url, tmp_path, clock, ca)
    while _ENGINES:
        _ENGINES.pop().dispose()


def _evidence(ca: SoftwareCa, agent_id: str, digest: bytes = bytes(32)) -> EnrolmentEvidence:
    ek_key = ec.generate_private_key(ec.SECP256R1())
    ak_key = ec.generate_private_key(ec.SECP256R1())
    ek_cert = ca.issue_ek_certificate(ek_key.public_key())
    return EnrolmentEvidence(
        agent_id=agent_id,
        ek_certificate=ek_cert,
        ek_public=tpm.encode_tpm2b_public(tpm.ek_public(ek_key.public_key())),
        ak_public=tpm.encode_tpm2b_public(tpm.ak_public(ak_key.public_key())),
        request_digest=digest,
    )


def test_challenge_expires(registry: Registry, clock: _Clock, ca: SoftwareCa) -> None:
    issued = registry.enrol(_evidence(ca, "slow"))
    assert issued.expires_at == clock.now + timedelta(minutes=5)
    clock.now += timedelta(minutes=5, seconds=1)
    right = activation_proof(SECRET, bytes(32))
    with pytest.raises(ActivationFailed, match="expired"):
        registry.activate("slow", right)
    with pytest.raises(ActivationFailed, match="no open enrolment"):  # purged
        registry.activate("slow", right)
    with pytest.raises(NotFound):
        registry.get("slow")


def test_pending_enrolment_is_no_identity_until_activated(
    registry: Registry, ca: SoftwareCa
) -> None:
    registry.enrol(_evidence(ca, "recorded"))
    with pytest.raises(AgentNotActive, match="enrolment pending"):
        registry.get("recorded")
    assert registry.list() == []
    identity = registry.activate("recorded", activation_proof(SECRET, bytes(32)))
    assert identity.state == "active"
    assert identity.ak_public is not None
    assert identity.ek_anchor_subject == "CN=Test TPM Manufacturer Root"
    assert identity.tpm_model == "TESTTPM"
    assert registry.get("recorded") == identity


def test_the_proof_must_answer_the_digest_it_was_issued_for(
    registry: Registry, ca: SoftwareCa
) -> None:
    registry.enrol(_evidence(ca, "bound", digest=b"\x01" * 32))
    with pytest.raises(ActivationFailed, match="does not match"):
        registry.activate("bound", activation_proof(SECRET, b"\x02" * 32))
    assert registry.activate("bound", activation_proof(SECRET, b"\x01" * 32)).state == "active"


def test_open_enrolments_are_bounded_and_expired_ones_make_room(
    database_url: str, tmp_path: Path, clock: _Clock, ca: SoftwareCa
) -> None:
    registry = _registry(database_url, tmp_path, clock, ca, max_pending=2)
    registry.enrol(_evidence(ca, "one"))
    registry.enrol(_evidence(ca, "two"))
    with pytest.raises(RegistrarBusy, match="2 enrolments are open"):
        registry.enrol(_evidence(ca, "three"))
    clock.now += timedelta(minutes=6)
    registry.enrol(_evidence(ca, "three"))


def test_delete_withdraws_open_enrolments(registry: Registry, ca: SoftwareCa) -> None:
    registry.enrol(_evidence(ca, "withdrawn"))
    registry.delete("withdrawn")
    with pytest.raises(ActivationFailed, match="no open enrolment"):
        registry.activate("withdrawn", activation_proof(SECRET, bytes(32)))
    with pytest.raises(NotFound):
        registry.delete("withdrawn")


def test_long_names_from_certificates_and_pins_are_kept_whole(
    database_url: str, tmp_path: Path, clock: _Clock
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
    registry = Registry(
        session_factory(engine),
        trust,
        ProofChecker.load(tmp_path / "state"),
        clock=clock,
        random_bytes=_KnownRandom(),
    )
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
    identity = registry.activate("long-names", activation_proof(SECRET, bytes(32)))
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
    registry.activate("zoned", activation_proof(SECRET, bytes(32)))
    enrolled = registry.get("zoned").enrolled_at
    assert enrolled.utcoffset() == timedelta(0)
    assert enrolled == clock.now
    assert issued.expires_at.utcoffset() == timedelta(0)
