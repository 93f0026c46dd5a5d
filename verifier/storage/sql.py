"""The verifier's SQL records: policies, agents under verification, transitions and events."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from geoattest.db import as_utc, transaction
from geoattest.errors import AgentAlreadyVerified, NotFound, PolicyInUse
from geoattest.wire import PolicyDocument
from verifier.core.states import AgentState
from verifier.storage.models import EventRecord, PolicyRecord, VerifiedAgent

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


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredPolicy:
    name: str
    version: int
    updated_at: datetime
    document: PolicyDocument


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    agent_id: str
    from_state: AgentState
    to_state: AgentState
    reason: str | None
    message: str | None
    details: Mapping[str, str]


class VerifierStore:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    # --- policies ---------------------------------------------------------------------------

    def put_policy(self, name: str, document: PolicyDocument, now: datetime) -> StoredPolicy:
        with transaction(self._sessions) as session:
            record = session.get(PolicyRecord, name)
            if record is None:
                record = PolicyRecord(name=name, version=0)
                session.add(record)
            record.version += 1
            record.document = document.model_dump_json()
            record.updated_at = now
            return _policy(record)

    def get_policy(self, name: str) -> StoredPolicy:
        with transaction(self._sessions) as session:
            record = session.get(PolicyRecord, name)
            if record is None:
                raise NotFound(f"no policy {name!r}")
            return _policy(record)

    def list_policies(self) -> list[StoredPolicy]:
        with transaction(self._sessions) as session:
            records = session.scalars(select(PolicyRecord).order_by(PolicyRecord.name))
            return [_policy(record) for record in records]

    def delete_policy(self, name: str) -> None:
        with transaction(self._sessions) as session:
            record = session.get(PolicyRecord, name)
            if record is None:
                raise NotFound(f"no policy {name!r}")
            users = session.scalar(select(func.count()).where(VerifiedAgent.policy_name == name))
            if users:
                raise PolicyInUse(f"policy {name!r} is used by {users} agent(s)")
            session.delete(record)

    # --- agents -----------------------------------------------------------------------------

    def add_agent(self, target: AgentTarget, now: datetime) -> None:
        with transaction(self._sessions) as session:
            if session.get(PolicyRecord, target.policy_name) is None:
                raise NotFound(f"no policy {target.policy_name!r}")
            if session.get(VerifiedAgent, target.agent_id) is not None:
                raise AgentAlreadyVerified(
                    f"agent {target.agent_id!r} is already under verification"
                )
            session.add(
                VerifiedAgent(
                    agent_id=target.agent_id,
                    policy_name=target.policy_name,
                    ak_public=target.ak_public,
                    agent_url=target.agent_url,
                    tls_certificate=target.tls_certificate,
                    location_key_public=target.location_key_public,
                    state=target.state,
                    state_since=now,
                    added_at=now,
                )
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
    ) -> bool:
        """Store a refreshed identity; returns whether the AK changed."""
        with transaction(self._sessions) as session:
            record = _agent(session, agent_id)
            changed = record.ak_public != ak_public
            record.ak_public = ak_public
            record.agent_url = agent_url
            record.tls_certificate = tls_certificate
            record.location_key_public = location_key_public
            return changed

    def set_policy_of(self, agent_id: str, policy_name: str) -> None:
        with transaction(self._sessions) as session:
            if session.get(PolicyRecord, policy_name) is None:
                raise NotFound(f"no policy {policy_name!r}")
            _agent(session, agent_id).policy_name = policy_name

    def remove_agent(self, agent_id: str) -> None:
        with transaction(self._sessions) as session:
            session.delete(_agent(session, agent_id))

    def record_transition(self, transition: Transition, now: datetime) -> int:
        """Store the agent's new state and an event; returns the event id."""
        with transaction(self._sessions) as session:
            record = _agent(session, transition.agent_id)
            record.state = transition.to_state
            record.reason = transition.reason
            record.message = transition.message
            record.state_since = now
            event = EventRecord(
                agent_id=transition.agent_id,
                at=now,
                from_state=transition.from_state,
                to_state=transition.to_state,
                reason=transition.reason,
                message=transition.message,
                details=json.dumps(dict(transition.details)) if transition.details else None,
            )
            session.add(event)
            session.flush()
            log.info(
                "agent %s: %s -> %s (%s)",
                transition.agent_id,
                transition.from_state,
                transition.to_state,
                transition.reason or "ok",
            )
            return event.id

    def events(self, agent_id: str, limit: int = 100) -> list[EventRecordView]:
        with transaction(self._sessions) as session:
            _agent(session, agent_id)
            records = session.scalars(
                select(EventRecord)
                .where(EventRecord.agent_id == agent_id)
                .order_by(EventRecord.id.desc())
                .limit(limit)
            )
            return [EventRecordView.of(record) for record in records]


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedAgentView:
    agent_id: str
    policy_name: str
    state: AgentState
    reason: str | None
    message: str | None
    state_since: datetime

    @classmethod
    def of(cls, record: VerifiedAgent) -> VerifiedAgentView:
        return cls(
            agent_id=record.agent_id,
            policy_name=record.policy_name,
            state=AgentState(record.state),
            reason=record.reason,
            message=record.message,
            state_since=as_utc(record.state_since),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRecordView:
    id: int
    agent_id: str
    at: datetime
    from_state: str
    to_state: str
    reason: str | None
    message: str | None
    details: Mapping[str, str]

    @classmethod
    def of(cls, record: EventRecord) -> EventRecordView:
        return cls(
            id=record.id,
            agent_id=record.agent_id,
            at=as_utc(record.at),
            from_state=record.from_state,
            to_state=record.to_state,
            reason=record.reason,
            message=record.message,
            details=json.loads(record.details) if record.details else {},
        )


def _agent(session: Session, agent_id: str) -> VerifiedAgent:
    record = session.get(VerifiedAgent, agent_id)
    if record is None:
        raise NotFound(f"agent {agent_id!r} is not under verification")
    return record


def _policy(record: PolicyRecord) -> StoredPolicy:
    return StoredPolicy(
        name=record.name,
        version=record.version,
        updated_at=as_utc(record.updated_at),
        document=PolicyDocument.model_validate_json(record.document),
    )
