"""The verifier's SQL tables as typed values: agents under verification and their events, and
(through ``PolicyTables``, ``verifier.storage.policies``) the policies.

Verdicts (records, state, lease) are written by ``verifier.storage.verdicts`` only; this module
reads them and writes the configuration (policies, the agents' identities). A change made with
an ``Audit`` goes into the transparency log as an audit entry in the same transaction.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from geoattest.db import as_utc, transaction
from geoattest.errors import AgentAlreadyVerified, NotFound
from verifier.core.events import AgentEvent
from verifier.core.log_entry import AuditAction
from verifier.core.reasons import Reason
from verifier.core.states import AgentMode, AgentState
from verifier.storage.config_changes import Audit, log_change
from verifier.storage.documents import DocumentKind, remember, tpm_name
from verifier.storage.models import (
    EventRecord,
    PolicyRecord,
    RecordFold,
    RecordRow,
    VerifiedAgent,
)
from verifier.storage.policies import PolicyTables
from verifier.storage.tokens import revoke_unexpired

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentTarget:
    """What a worker needs to run an agent's rounds."""

    agent_id: str
    policy_name: str
    ak_public: bytes
    agent_url: str
    tls_certificate: bytes
    state: AgentState
    location_key_public: bytes | None = None
    ek_certificate_sha256: bytes | None = None
    gnss_receiver: bytes | None = None  # canonical JSON of the enrolled receiver
    mode: AgentMode = AgentMode.PULL


class VerifierStore(PolicyTables):
    """The verifier's configuration tables: policies (``PolicyTables``), agents, events."""

    # --- agents -----------------------------------------------------------------------------

    def add_agent(self, target: AgentTarget, now: datetime, *, audit: Audit | None = None) -> None:
        with transaction(self._sessions) as session:
            if session.get(PolicyRecord, target.policy_name) is None:
                raise NotFound(f"no policy {target.policy_name!r}")
            if session.get(VerifiedAgent, target.agent_id) is not None:
                raise AgentAlreadyVerified(
                    f"agent {target.agent_id!r} is already under verification"
                )
            seq, head = _chain_end(session, target.agent_id)
            _remember_keys(session, now, target.ak_public, target.location_key_public)
            session.add(
                VerifiedAgent(
                    agent_id=target.agent_id,
                    policy_name=target.policy_name,
                    ak_public=target.ak_public,
                    agent_url=target.agent_url,
                    tls_certificate=target.tls_certificate,
                    location_key_public=target.location_key_public,
                    ek_certificate_sha256=target.ek_certificate_sha256,
                    gnss_receiver=target.gnss_receiver,
                    mode=target.mode.value,
                    state=target.state,
                    state_since=now,
                    added_at=now,
                    fence=0,
                    chain_seq=seq,
                    chain_head=head,
                )
            )
            log_change(
                session,
                audit,
                AuditAction.AGENT_ADDED,
                target.agent_id,
                agent_id=target.agent_id,
                policy=target.policy_name,
                ak_sha256=hashlib.sha256(target.ak_public).hexdigest(),
            )

    def get_agent(self, agent_id: str) -> VerifiedAgentView:
        with transaction(self._sessions) as session:
            return VerifiedAgentView.of(_agent(session, agent_id))

    def list_agents(self) -> list[VerifiedAgentView]:
        with transaction(self._sessions) as session:
            records = session.scalars(select(VerifiedAgent).order_by(VerifiedAgent.agent_id))
            return [VerifiedAgentView.of(record) for record in records]

    def targets(self) -> dict[str, AgentTarget]:
        """Every agent's round target (one query; workers cache it per configuration version)."""
        with transaction(self._sessions) as session:
            return {
                record.agent_id: AgentTarget(
                    agent_id=record.agent_id,
                    policy_name=record.policy_name,
                    ak_public=record.ak_public,
                    agent_url=record.agent_url,
                    tls_certificate=record.tls_certificate,
                    state=AgentState(record.state),
                    location_key_public=record.location_key_public,
                    gnss_receiver=record.gnss_receiver,
                    mode=AgentMode(record.mode or AgentMode.PULL),
                )
                for record in session.scalars(select(VerifiedAgent))
            }

    def update_identity(
        self,
        agent_id: str,
        *,
        ak_public: bytes,
        agent_url: str,
        tls_certificate: bytes,
        location_key_public: bytes | None,
        ek_certificate_sha256: bytes | None = None,
        gnss_receiver: bytes | None = None,
        audit: Audit | None = None,
    ) -> bool:
        """Store a refreshed identity (the enrolled GNSS receiver with it: a refresh after a
        re-enrolment is how an operator accepts a new receiver); returns whether the AK
        changed."""
        with transaction(self._sessions) as session:
            record = _agent(session, agent_id)
            changed = record.ak_public != ak_public
            record.ak_public = ak_public
            record.agent_url = agent_url
            record.tls_certificate = tls_certificate
            record.location_key_public = location_key_public
            receiver_changed = record.gnss_receiver != gnss_receiver
            record.gnss_receiver = gnss_receiver
            if ek_certificate_sha256 is not None:
                record.ek_certificate_sha256 = ek_certificate_sha256
            _remember_keys(
                session, audit.at if audit else datetime.now(UTC), ak_public, location_key_public
            )
            log_change(
                session,
                audit,
                AuditAction.AGENT_REFRESHED,
                agent_id,
                agent_id=agent_id,
                ak_changed=str(changed).lower(),
                gnss_receiver_changed=str(receiver_changed).lower(),
                ak_sha256=hashlib.sha256(ak_public).hexdigest(),
            )
            return changed

    def set_policy_of(self, agent_id: str, policy_name: str, *, audit: Audit | None = None) -> None:
        with transaction(self._sessions) as session:
            if session.get(PolicyRecord, policy_name) is None:
                raise NotFound(f"no policy {policy_name!r}")
            _agent(session, agent_id).policy_name = policy_name
            log_change(
                session,
                audit,
                AuditAction.AGENT_POLICY_SET,
                agent_id,
                agent_id=agent_id,
                policy=policy_name,
            )

    def remove_agent(
        self, agent_id: str, now: datetime | None = None, *, audit: Audit | None = None
    ) -> None:
        """Stop verifying the agent; its tokens still valid at ``now`` are revoked with it."""
        with transaction(self._sessions) as session:
            record = _agent(session, agent_id)
            log_change(
                session,
                audit,
                AuditAction.AGENT_REMOVED,
                agent_id,
                agent_id=agent_id,
                state=record.state,
                records=str(record.chain_seq),
            )
            session.delete(record)
            if now is not None:
                revoke_unexpired(session.connection(), agent_id, now)

    def events(self, agent_id: str, limit: int = 100) -> list[AgentEvent]:
        with transaction(self._sessions) as session:
            _agent(session, agent_id)
            records = session.scalars(
                select(EventRecord)
                .where(EventRecord.agent_id == agent_id)
                .order_by(EventRecord.id.desc())
                .limit(limit)
            )
            return [event_of(record) for record in records]

    def attested_since_before(self, cutoff: datetime) -> list[tuple[str, str, datetime | None]]:
        """Agents stored ``attested`` whose last pass is older than ``cutoff`` (or missing):
        (agent id, policy name, last passed at). The watchdog's candidates."""
        with transaction(self._sessions) as session:
            rows = session.execute(
                select(
                    VerifiedAgent.agent_id, VerifiedAgent.policy_name, VerifiedAgent.last_passed_at
                ).where(
                    VerifiedAgent.state == AgentState.ATTESTED.value,
                    (VerifiedAgent.last_passed_at < cutoff)
                    | (VerifiedAgent.last_passed_at.is_(None)),
                )
            )
            return [
                (agent_id, policy, as_utc(passed) if passed else None)
                for agent_id, policy, passed in rows
            ]


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedAgentView:
    """An agent's stored verdict; readers present it through ``verifier.core.lease``."""

    agent_id: str
    policy_name: str
    state: AgentState
    reason: Reason | None
    message: str | None
    details: Mapping[str, str]
    state_since: datetime
    last_round_at: datetime | None
    last_passed_at: datetime | None
    ima_entries_verified: int | None
    records: int  # seq of the newest evidence record
    ek_certificate_sha256: bytes | None = None
    mode: AgentMode = AgentMode.PULL

    @classmethod
    def of(cls, record: VerifiedAgent) -> VerifiedAgentView:
        return cls(
            agent_id=record.agent_id,
            policy_name=record.policy_name,
            state=AgentState(record.state),
            reason=_reason(record.reason),
            message=record.message,
            details=json.loads(record.details) if record.details else {},
            state_since=as_utc(record.state_since),
            last_round_at=as_utc(record.last_round_at) if record.last_round_at else None,
            last_passed_at=as_utc(record.last_passed_at) if record.last_passed_at else None,
            ima_entries_verified=record.ima_entries_verified,
            records=record.chain_seq,
            ek_certificate_sha256=record.ek_certificate_sha256,
            mode=AgentMode(record.mode or AgentMode.PULL),
        )


def _reason(value: str | None) -> Reason | None:
    try:
        return Reason(value) if value is not None else None
    except ValueError:  # written by an older version under another name
        return None


def event_of(record: EventRecord) -> AgentEvent:
    return AgentEvent(
        id=record.id,
        agent_id=record.agent_id,
        at=as_utc(record.at),
        from_state=AgentState(record.from_state),
        to_state=AgentState(record.to_state),
        reason=_reason(record.reason),
        message=record.message,
        details=json.loads(record.details) if record.details else {},
        round_id=record.round_id,
        record_seq=record.record_seq,
    )


def _remember_keys(session: Session, at: datetime, *publics: bytes | None) -> None:
    """Keep the TPM public areas records name (AK, location key) for later exports."""
    for public in publics:
        if public is not None:
            remember(session, DocumentKind.TPM_PUBLIC, public, at, tpm_name(public))


def _chain_end(session: Session, agent_id: str) -> tuple[int, bytes | None]:
    """Where an agent's chain stands in the records kept (a re-added agent continues it)."""
    last = session.execute(
        select(RecordRow.seq, RecordRow.digest)
        .where(RecordRow.agent_id == agent_id)
        .order_by(RecordRow.seq.desc())
        .limit(1)
    ).first()
    fold = session.execute(
        select(RecordFold.last_seq, RecordFold.head)
        .where(RecordFold.agent_id == agent_id)
        .order_by(RecordFold.last_seq.desc())
        .limit(1)
    ).first()
    ends = [end for end in (last, fold) if end is not None]
    if not ends:
        return 0, None
    seq, head = max(ends, key=lambda end: end[0])
    return int(seq), bytes(head)


def _agent(session: Session, agent_id: str) -> VerifiedAgent:
    record = session.get(VerifiedAgent, agent_id)
    if record is None:
        raise NotFound(f"agent {agent_id!r} is not under verification")
    return record
