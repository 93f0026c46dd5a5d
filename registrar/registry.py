"""Enrolment: who may join the fleet, and the proof that an AK lives in the same TPM as an EK.

Protocol (Keylime's, with our record keeping):
1. ``enrol``: the agent sends its EK certificate, EK public area and AK public area. The EK
   certificate must chain to an allowlisted manufacturer CA (and match a purchase-order pin when
   pins are configured); the EK public area must be the certificate's key with EK attributes; the
   AK must be a restricted, fixedTPM signing key. The answer is a MakeCredential challenge: a fresh
   secret encrypted to the EK, bound to the AK's name, which only a TPM holding both keys can open
   (ActivateCredential).
2. ``activate``: the agent proves it recovered the secret (HMAC over its agent id). Only then is
   the AK recorded as the agent's attestation key and the agent ``active``.

A geofencing agent also sends its location key with a TPM2_Certify by the AK (extraData
``location_key_qualifying_data(agent_id, AK name)``). It is refused unless its attributes show it
cannot leave the TPM and the certification verifies with the AK being enrolled; it is recorded
with the AK at activation. An active agent may register or rotate it later
(``register_location_key``), certified by its registered AK.

An agent id stays bound to its EK: enrolling it again with another EK is refused, never overwritten.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import sqlalchemy.exc
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

import tpm
from allowlists import EkTrustStore, PinSet, check_ek, load_certificate
from geoattest.db import as_utc, transaction
from geoattest.errors import (
    ActivationFailed,
    AgentIdTaken,
    AgentNotActive,
    AkInvalid,
    CertifyInvalid,
    Conflict,
    EkAlreadyEnrolled,
    EkMismatch,
    EkUntrusted,
    LocationKeyInvalid,
    MalformedRequest,
    NotFound,
    TpmFormatError,
)
from geoattest.wire import activation_proof, location_key_qualifying_data
from registrar.identity import AgentIdentity
from registrar.models import AgentRecord, PendingChallenge

log = logging.getLogger(__name__)

SECRET_BYTES = 32
MAX_FAILED_PROOFS = 3


class AgentState(StrEnum):
    PENDING = "pending"  # enrolled, AK not yet proven
    ACTIVE = "active"  # AK proven to live in the TPM of the allowlisted EK


@dataclass(frozen=True, slots=True, kw_only=True)
class TrustPolicy:
    """What the registrar trusts: manufacturer CAs, optional purchase-order pins, challenge
    lifetime."""

    store: EkTrustStore
    pins: PinSet | None
    challenge_ttl: timedelta


@dataclass(frozen=True, slots=True, kw_only=True)
class LocationKey:
    """A location key's TPM2B_PUBLIC and its TPM2_Certify by the AK (TPMS_ATTEST and
    TPMT_SIGNATURE)."""

    public: bytes
    certify_attest: bytes
    certify_signature: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class EnrolmentEvidence:
    agent_id: str
    ek_certificate: bytes
    ek_public: bytes
    ak_public: bytes
    agent_url: str | None = None
    tls_certificate: bytes | None = None
    location_key: LocationKey | None = None
    request_digest: bytes  # ``enrolment_digest`` of the request: what the activation proof binds


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedChallenge:
    agent_id: str
    state: AgentState
    credential_blob: bytes
    encrypted_secret: bytes
    expires_at: datetime


class Registry:
    """The registrar's core: enrol, activate, look up and remove agent identities."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        trust: TrustPolicy,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._sessions = sessions
        self._trust = trust
        self._clock = clock
        self._random_bytes = random_bytes

    def enrol(self, evidence: EnrolmentEvidence) -> IssuedChallenge:
        """Check EK and AK, then issue a MakeCredential challenge for the AK's name.

        Raises ``EkUntrusted``/``EkNotPinned`` (EK certificate), ``EkMismatch`` (EK public area),
        ``AkInvalid`` (AK), ``LocationKeyInvalid`` (location key attributes or certification, see
        ``check_location_key``), ``AgentIdTaken``/``EkAlreadyEnrolled`` (identity conflicts).
        """
        now = self._clock()
        try:
            certificate = load_certificate(evidence.ek_certificate)
        except EkUntrusted as e:
            raise MalformedRequest(f"ek_certificate is not an X.509 certificate: {e}") from e
        verdict = check_ek(certificate, store=self._trust.store, pins=self._trust.pins, now=now)
        ek_public = _parse_public(evidence.ek_public, EkMismatch, "EK public area")
        tpm.check_ek_attributes(ek_public)
        if not tpm.public_key_matches(ek_public, verdict.certificate.public_key):
            raise EkMismatch("EK public area does not hold the key of the EK certificate")
        ak_public = _parse_public(evidence.ak_public, AkInvalid, "AK public area")
        tpm.check_ak_attributes(ak_public)
        location_key = evidence.location_key
        if location_key is not None:
            check_location_key(location_key, ak=ak_public, agent_id=evidence.agent_id)

        secret = self._random_bytes(SECRET_BYTES)
        challenge = tpm.make_credential(ek_public, ak_public.name, secret)
        expires_at = now + self._trust.challenge_ttl
        # An EK is identified by its public key: certificate bytes can be re-encoded (non-minimal
        # DER, ECDSA s -> n-s) and still validate, but the key cannot change.
        fingerprint = ek_key_fingerprint(verdict.certificate.public_key)
        try:
            with transaction(self._sessions) as session:
                record = _claim_identity(session, evidence.agent_id, fingerprint)
                if record is None:
                    record = AgentRecord(
                        agent_id=evidence.agent_id,
                        state=AgentState.PENDING,
                        ek_fingerprint=fingerprint,
                        enrolled_at=now,
                    )
                    session.add(record)
                record.ek_certificate = evidence.ek_certificate
                record.ek_public = evidence.ek_public
                record.ek_anchor_subject = verdict.chain.anchor.subject
                record.ek_anchor_fingerprint = verdict.chain.anchor.fingerprint.hex()
                record.tpm_manufacturer = verdict.certificate.tpm_manufacturer
                record.tpm_model = verdict.certificate.tpm_model
                record.purchase_order = verdict.pin.purchase_order if verdict.pin else None
                record.asset_tag = verdict.pin.asset_tag if verdict.pin else None
                session.merge(
                    PendingChallenge(
                        agent_id=evidence.agent_id,
                        ak_public=evidence.ak_public,
                        ak_name=ak_public.name,
                        secret=secret,
                        expires_at=expires_at,
                        failed_attempts=0,
                        agent_url=evidence.agent_url,
                        tls_certificate=evidence.tls_certificate,
                        request_digest=evidence.request_digest,
                        location_key_public=location_key.public if location_key else None,
                        location_key_certify_attest=(
                            location_key.certify_attest if location_key else None
                        ),
                        location_key_certify_signature=(
                            location_key.certify_signature if location_key else None
                        ),
                    )
                )
                state = AgentState(record.state)
        except sqlalchemy.exc.IntegrityError as e:  # a concurrent enrolment won the race
            raise Conflict(
                f"another enrolment of agent {evidence.agent_id!r} or of this EK is in progress"
            ) from e
        log.info(
            "enrolment challenge issued",
            extra={"agent_id": evidence.agent_id, "ek_fingerprint": fingerprint},
        )
        return IssuedChallenge(
            agent_id=evidence.agent_id,
            state=state,
            credential_blob=challenge.credential_blob,
            encrypted_secret=challenge.encrypted_secret,
            expires_at=expires_at,
        )

    def activate(self, agent_id: str, proof: bytes) -> AgentIdentity:
        """Accept the AK of the open challenge if ``proof`` shows the TPM recovered its secret.

        Raises ``NotFound`` (no such agent), ``ActivationFailed`` (no open or an expired challenge,
        or a wrong proof; after ``MAX_FAILED_PROOFS`` wrong proofs the challenge is withdrawn).
        """
        now = self._clock()
        with transaction(self._sessions) as session:
            record = _get_record(session, agent_id)
            pending = session.get(PendingChallenge, agent_id)
            refusal = _check_proof(pending, agent_id, proof, now)
            if pending is not None and refusal is None:
                record.ak_public = pending.ak_public
                record.ak_name = pending.ak_name
                # The API address and certificate are proven together with the AK they came with.
                record.agent_url = pending.agent_url
                record.tls_certificate = pending.tls_certificate
                # So is the location key: its certification was checked against this AK.
                record.location_key_public = pending.location_key_public
                record.location_key_certify_attest = pending.location_key_certify_attest
                record.location_key_certify_signature = pending.location_key_certify_signature
                record.state = AgentState.ACTIVE
                record.activated_at = now
                session.delete(pending)
            elif pending is not None and refusal is not None:
                # Commit the bookkeeping (attempt counted, challenge withdrawn), then refuse.
                if refusal.withdraw:
                    session.delete(pending)
                else:
                    pending.failed_attempts += 1
            identity = AgentIdentity.from_record(record)
        if refusal is not None:
            log.warning("activation refused: %s", refusal.message, extra={"agent_id": agent_id})
            raise ActivationFailed(refusal.message)
        log.info("agent activated", extra={"agent_id": agent_id})
        return identity

    def register_location_key(self, agent_id: str, key: LocationKey) -> AgentIdentity:
        """Record (or rotate) the location key of an active agent, certified by its registered AK.

        Raises ``NotFound``, ``AgentNotActive`` (no AK proven yet) or ``LocationKeyInvalid``.
        """
        with transaction(self._sessions) as session:
            record = _get_record(session, agent_id)
            if record.state != AgentState.ACTIVE or record.ak_public is None:
                raise AgentNotActive(f"agent {agent_id!r} is not active: enrol and activate first")
            ak_public = _parse_public(record.ak_public, AkInvalid, "registered AK public area")
            check_location_key(key, ak=ak_public, agent_id=agent_id)
            record.location_key_public = key.public
            record.location_key_certify_attest = key.certify_attest
            record.location_key_certify_signature = key.certify_signature
            identity = AgentIdentity.from_record(record)
        log.info("location key registered", extra={"agent_id": agent_id})
        return identity

    def get(self, agent_id: str) -> AgentIdentity:
        with transaction(self._sessions) as session:
            return AgentIdentity.from_record(_get_record(session, agent_id))

    def list(self) -> list[AgentIdentity]:
        with transaction(self._sessions) as session:
            records = session.scalars(select(AgentRecord).order_by(AgentRecord.agent_id))
            return [AgentIdentity.from_record(record) for record in records]

    def delete(self, agent_id: str) -> None:
        with transaction(self._sessions) as session:
            session.delete(_get_record(session, agent_id))
        log.info("agent deleted", extra={"agent_id": agent_id})


def check_location_key(key: LocationKey, *, ak: tpm.TpmPublic, agent_id: str) -> tpm.TpmPublic:
    """Check a location key and its certification; returns its parsed public area.

    The public area must parse and show a key that cannot leave the TPM (fixedTPM, fixedParent,
    sensitiveDataOrigin; unrestricted ECC P-256 ECDSA-SHA256 signing key, see
    ``tpm.check_location_key_attributes``), and the TPM2_Certify must verify with ``ak``, name
    exactly this public area and carry ``location_key_qualifying_data(agent_id, ak.name)``: only
    then was the key created inside the TPM that holds the AK. Raises ``LocationKeyInvalid``.
    """
    try:
        public = tpm.parse_tpm2b_public(key.public)
    except TpmFormatError as e:
        raise LocationKeyInvalid(f"location key is not a TPM2B_PUBLIC: {e.message}") from e
    tpm.check_location_key_attributes(public)
    try:
        tpm.verify_certify(
            signer=ak,
            attest=key.certify_attest,
            signature=key.certify_signature,
            certified=public,
            qualifying_data=location_key_qualifying_data(agent_id, ak.name),
        )
    except CertifyInvalid as e:
        raise LocationKeyInvalid(
            f"location key is not certified by the agent's AK: {e.message}"
        ) from e
    return public


def ek_key_fingerprint(key: CertificatePublicKeyTypes) -> str:
    """SHA-256 (hex) of the EK's SubjectPublicKeyInfo: the agent's stable EK identity."""
    spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def _claim_identity(session: Session, agent_id: str, ek_fingerprint: str) -> AgentRecord | None:
    """The existing record for this agent id and EK, ``None`` if new; refuses any other pairing."""
    record = session.get(AgentRecord, agent_id)
    if record is not None and record.ek_fingerprint != ek_fingerprint:
        raise AgentIdTaken(
            f"agent id {agent_id!r} is enrolled with another EK "
            f"(sha256 {record.ek_fingerprint[:16]}…); delete it first to re-use the id"
        )
    owner = session.scalar(select(AgentRecord).where(AgentRecord.ek_fingerprint == ek_fingerprint))
    if owner is not None and owner.agent_id != agent_id:
        raise EkAlreadyEnrolled(f"this EK is already enrolled as agent {owner.agent_id!r}")
    return record


@dataclass(frozen=True, slots=True)
class _Refusal:
    message: str
    withdraw: bool  # drop the challenge: the agent must enrol again


def _check_proof(
    pending: PendingChallenge | None, agent_id: str, proof: bytes, now: datetime
) -> _Refusal | None:
    if pending is None:
        return _Refusal(f"agent {agent_id!r} has no open challenge: enrol first", withdraw=False)
    if as_utc(pending.expires_at) <= now:
        return _Refusal(f"challenge for agent {agent_id!r} expired: enrol again", withdraw=True)
    if pending.request_digest is None:  # opened before digests were kept: cannot be proven
        return _Refusal(f"challenge for agent {agent_id!r} predates this version", withdraw=True)
    if hmac.compare_digest(activation_proof(pending.secret, pending.request_digest), proof):
        return None
    last_try = pending.failed_attempts + 1 >= MAX_FAILED_PROOFS
    suffix = "; challenge withdrawn, enrol again" if last_try else ""
    return _Refusal(
        f"activation proof for agent {agent_id!r} does not match the challenge{suffix}",
        withdraw=last_try,
    )


def _get_record(session: Session, agent_id: str) -> AgentRecord:
    record = session.get(AgentRecord, agent_id)
    if record is None:
        raise NotFound(f"no agent {agent_id!r}")
    return record


def _parse_public(
    data: bytes, error: type[EkMismatch] | type[AkInvalid], what: str
) -> tpm.TpmPublic:
    try:
        return tpm.parse_tpm2b_public(data)
    except TpmFormatError as e:
        raise error(f"{what} is not a TPM2B_PUBLIC: {e.message}") from e
