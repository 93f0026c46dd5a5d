"""Enrolment: who may join the fleet, and the proof that an AK lives in the same TPM as an EK.

Protocol (Keylime's, with our record keeping; ADR 2):
1. ``enrol``: the agent sends its EK certificate, EK public area and AK public area; they must
   pass ``registrar.evidence.check_enrolment``. The answer is a MakeCredential challenge: a fresh
   secret encrypted to the EK, bound to the AK's name, which only a TPM holding both keys can
   open (ActivateCredential). The request waits as a *pending enrolment* (``registrar.pending``);
   the registrar keeps a keyed hash of the expected proof, never the secret
   (``registrar.proof_check``).
2. ``activate``: the agent proves it recovered the secret: ``wire.activation_proof(secret,
   enrolment digest)``, which binds the whole request as the agent sent it. Only the
   enrolment the proof answers is used, and only then is the identity record written (created,
   or replaced as a whole for a re-enrolment): EK certificate as sent, AK, API address, TLS
   certificate, location key and GNSS receiver.

So a party that knows a node's public EK certificate but has no TPM changes nothing: its
enrolments never activate, never replace the genuine node's challenge, never claim an agent id
or an EK, and expire. An agent id stays bound to its EK and an EK to its agent id once proven
(``AgentIdTaken`` / ``EkAlreadyEnrolled``); an operator deletes the record to re-use either.

A geofencing agent also sends its location key with a TPM2_Certify by the AK; it is recorded
with the AK at activation. An active agent may register or rotate it later
(``register_location_key``), certified by its registered AK.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import sqlalchemy.exc
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

import tpm
from geoattest.db import transaction
from geoattest.errors import (
    ActivationFailed,
    AgentIdTaken,
    AgentNotActive,
    AkInvalid,
    Conflict,
    EkAlreadyEnrolled,
    LocationKeyInvalid,
    NotFound,
    RegistrarBusy,
)
from geoattest.wire import activation_proof
from registrar import location_challenges, pending
from registrar.evidence import (
    EnrolmentEvidence,
    LocationKey,
    TrustPolicy,
    check_enrolment,
    check_location_key,
    parse_public,
)
from registrar.identity import AgentIdentity
from registrar.models import AgentRecord, PendingEnrolment
from registrar.proof_check import ProofChecker

__all__ = [
    "AgentState",
    "EnrolmentEvidence",
    "IssuedChallenge",
    "LocationKey",
    "Registry",
    "TrustPolicy",
]

log = logging.getLogger(__name__)

SECRET_BYTES = 32
ENROLMENT_ID_BYTES = 16
MAX_PENDING_ENROLMENTS = 10_000  # bounds the table (and the proofs checked per activation)


class AgentState(StrEnum):
    PENDING = "pending"  # an enrolment waits for its proof; no identity is recorded yet
    ACTIVE = "active"  # AK proven to live in the TPM of the allowlisted EK


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedChallenge:
    agent_id: str
    state: AgentState  # ``active`` when a proven identity exists (re-enrolment), else pending
    credential_blob: bytes
    encrypted_secret: bytes
    expires_at: datetime


class Registry:
    """The registrar's core: enrol, activate, look up and remove agent identities."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        trust: TrustPolicy,
        checker: ProofChecker,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        random_bytes: Callable[[int], bytes] = os.urandom,
        max_pending: int = MAX_PENDING_ENROLMENTS,
    ) -> None:
        self._sessions = sessions
        self._trust = trust
        self._checker = checker
        self._clock = clock
        self._random_bytes = random_bytes
        self._max_pending = max_pending

    def enrol(self, evidence: EnrolmentEvidence) -> IssuedChallenge:
        """Check EK and AK, then issue a MakeCredential challenge for the AK's name.

        Nothing stored changes but the new pending enrolment. Raises what
        ``check_enrolment`` raises, ``AgentIdTaken``/``EkAlreadyEnrolled`` (conflicts with a
        *proven* identity only) and ``RegistrarBusy`` (too many open enrolments).
        """
        now = self._clock()
        checked = check_enrolment(evidence, self._trust, now=now)
        secret = self._random_bytes(SECRET_BYTES)
        challenge = tpm.make_credential(checked.ek_public, checked.ak_public.name, secret)
        enrolment_id = self._random_bytes(ENROLMENT_ID_BYTES).hex()
        proof_check = self._checker.seal(
            enrolment_id=enrolment_id,
            agent_id=evidence.agent_id,
            request_digest=evidence.request_digest,
            proof=activation_proof(secret, evidence.request_digest),
        )
        expires_at = now + self._trust.challenge_ttl
        with transaction(self._sessions) as session:
            record = _refuse_conflicts(session, evidence.agent_id, checked.ek_fingerprint)
            pending.purge_expired(session, now)
            if pending.count(session) >= self._max_pending:
                raise RegistrarBusy(
                    f"{self._max_pending} enrolments are open; enrol again in a few minutes"
                )
            pending.add(
                session,
                checked,
                enrolment_id=enrolment_id,
                proof_check=proof_check,
                now=now,
                expires_at=expires_at,
            )
            state = AgentState.PENDING if record is None else AgentState.ACTIVE
        log.info(
            "enrolment challenge issued",
            extra={"agent_id": evidence.agent_id, "ek_fingerprint": checked.ek_fingerprint},
        )
        return IssuedChallenge(
            agent_id=evidence.agent_id,
            state=state,
            credential_blob=challenge.credential_blob,
            encrypted_secret=challenge.encrypted_secret,
            expires_at=expires_at,
        )

    def activate(self, agent_id: str, proof: bytes) -> AgentIdentity:
        """Record the identity of the open enrolment that ``proof`` answers.

        Raises ``ActivationFailed`` (no open enrolment, expired, or a proof that answers none;
        a wrong proof withdraws nothing), ``AgentIdTaken``/``EkAlreadyEnrolled`` when another
        activation proved a conflicting identity meanwhile.
        """
        now = self._clock()
        identity: AgentIdentity | None = None
        try:
            with transaction(self._sessions) as session:
                match = pending.match_proof(
                    session, self._checker, agent_id=agent_id, proof=proof, now=now
                )
                if match.enrolment is not None:
                    identity = _record_identity(session, match.enrolment, now)
                    pending.withdraw(
                        session, agent_id=agent_id, ek_fingerprint=match.enrolment.ek_fingerprint
                    )
                pending.purge_expired(session, now)
        except sqlalchemy.exc.IntegrityError as e:  # a concurrent activation won the race
            raise Conflict(f"agent {agent_id!r} or its EK was activated concurrently") from e
        if identity is None:
            refusal = match.refusal or f"no enrolment of agent {agent_id!r} was activated"
            log.warning("activation refused: %s", refusal, extra={"agent_id": agent_id})
            raise ActivationFailed(refusal)
        log.info("agent activated", extra={"agent_id": agent_id})
        return identity

    def location_key_challenge(self, agent_id: str) -> tuple[bytes, datetime]:
        """A single-use nonce for the next location-key certification of an active agent, and
        its expiry (``registrar.location_challenges``). Raises ``NotFound``/``AgentNotActive``."""
        with transaction(self._sessions) as session:
            self._active_record(session, agent_id)
            return location_challenges.issue(session, agent_id, self._clock(), self._random_bytes)

    def register_location_key(self, agent_id: str, key: LocationKey) -> AgentIdentity:
        """Record (or rotate) the location key of an active agent, certified by its registered AK
        over a registrar nonce issued for it (``location_key_challenge``), consumed here.

        Raises ``NotFound``, ``AgentNotActive`` (no AK proven yet) or ``LocationKeyInvalid`` (no
        nonce, one not open for this agent, or a certification that does not verify); a refused
        registration still uses up its nonce.
        """
        with transaction(self._sessions) as session:
            record = self._active_record(session, agent_id)
            if record.ak_public is None:
                raise AgentNotActive(f"agent {agent_id!r} has no AK: enrol and activate first")
            if key.nonce is None:
                raise LocationKeyInvalid(
                    "a location key registered after enrolment must be certified over a fresh "
                    f"registrar nonce: POST /v1/agents/{agent_id}/location-key/challenge first"
                )
            refusal = location_challenges.take(session, agent_id, key.nonce, self._clock())
            ak_public = parse_public(record.ak_public, AkInvalid, "registered AK public area")
            if refusal is None:
                try:
                    check_location_key(key, ak=ak_public, agent_id=agent_id, nonce=key.nonce)
                except LocationKeyInvalid as e:
                    refusal = e.message
            if refusal is None:  # else only the nonce's removal is committed
                record.location_key_public = key.public
                record.location_key_certify_attest = key.certify_attest
                record.location_key_certify_signature = key.certify_signature
                record.location_key_nonce = key.nonce
            identity = AgentIdentity.from_record(record)
        if refusal is not None:
            log.warning("location key refused: %s", refusal, extra={"agent_id": agent_id})
            raise LocationKeyInvalid(f"location key of {agent_id!r} refused: {refusal}")
        log.info("location key registered", extra={"agent_id": agent_id})
        return identity

    def get(self, agent_id: str) -> AgentIdentity:
        """The proven identity of ``agent_id``; ``AgentNotActive`` while an enrolment is only
        pending, ``NotFound`` otherwise."""
        with transaction(self._sessions) as session:
            return AgentIdentity.from_record(self._active_record(session, agent_id))

    def list(self) -> list[AgentIdentity]:
        with transaction(self._sessions) as session:
            records = session.scalars(select(AgentRecord).order_by(AgentRecord.agent_id))
            return [AgentIdentity.from_record(record) for record in records]

    def delete(self, agent_id: str) -> None:
        """Remove the identity and open enrolments of ``agent_id``; ``NotFound`` if neither."""
        now = self._clock()
        with transaction(self._sessions) as session:
            record = session.get(AgentRecord, agent_id)
            if record is None and not pending.has_open(session, agent_id, now):
                raise NotFound(f"no agent {agent_id!r}")
            fingerprint = record.ek_fingerprint if record is not None else None
            if record is not None:
                session.delete(record)
            pending.withdraw(session, agent_id=agent_id, ek_fingerprint=fingerprint)
        log.info("agent deleted", extra={"agent_id": agent_id})

    def _active_record(self, session: Session, agent_id: str) -> AgentRecord:
        record = session.get(AgentRecord, agent_id)
        if record is not None:
            return record
        if pending.has_open(session, agent_id, self._clock()):
            raise AgentNotActive(
                f"agent {agent_id!r} has an enrolment pending: no identity until it activates"
            )
        raise NotFound(f"no agent {agent_id!r}")


def _refuse_conflicts(session: Session, agent_id: str, ek_fingerprint: str) -> AgentRecord | None:
    """The proven record of this agent id and EK, ``None`` if none; refuses any other pairing.

    Only proven identities count: a pending enrolment (which anyone can post) claims nothing.
    """
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


def _record_identity(session: Session, enrolment: PendingEnrolment, now: datetime) -> AgentIdentity:
    """Write the identity record from the proven enrolment, every field from it alone."""
    record = _refuse_conflicts(session, enrolment.agent_id, enrolment.ek_fingerprint)
    if record is None:
        record = AgentRecord(
            agent_id=enrolment.agent_id,
            ek_fingerprint=enrolment.ek_fingerprint,
            enrolled_at=enrolment.created_at,
        )
        session.add(record)
    record.state = AgentState.ACTIVE
    record.activated_at = now
    record.ek_certificate = enrolment.ek_certificate
    record.ek_public = enrolment.ek_public
    record.ek_anchor_subject = enrolment.ek_anchor_subject
    record.ek_anchor_fingerprint = enrolment.ek_anchor_fingerprint
    record.tpm_manufacturer = enrolment.tpm_manufacturer
    record.tpm_model = enrolment.tpm_model
    record.purchase_order = enrolment.purchase_order
    record.asset_tag = enrolment.asset_tag
    record.ak_public = enrolment.ak_public
    record.ak_name = enrolment.ak_name
    # The API address, its certificate and the location key are proven with the AK they came
    # with: a re-enrolment that leaves one out clears it (the node no longer offers it).
    record.agent_url = enrolment.agent_url
    record.tls_certificate = enrolment.tls_certificate
    record.location_key_public = enrolment.location_key_public
    record.location_key_certify_attest = enrolment.location_key_certify_attest
    record.location_key_certify_signature = enrolment.location_key_certify_signature
    record.gnss_receiver = enrolment.gnss_receiver  # as the location key: what this enrolment says
    session.flush()
    return AgentIdentity.from_record(record)
