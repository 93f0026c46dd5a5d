"""Read-only queries the dashboard and the CLI make over the whole fleet: events across agents,
an agent's identity as the verifier holds it, its newest round records (for positions) and the
tokens issued to it (what was issued, never the token itself: a token is a bearer credential
until it expires, and viewers may read this)."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from geoattest.db import as_utc, transaction
from geoattest.errors import NotFound
from verifier.core.events import AgentEvent
from verifier.core.record import decode_record
from verifier.core.record_types import EvidenceRecord
from verifier.storage.models import EventRecord, RecordRow, TokenRow, VerifiedAgent
from verifier.storage.records import stored_body
from verifier.storage.sql import event_of

MAX_EVENTS = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class HeldIdentity:
    """What the verifier holds of an agent's identity (taken from the registrar, checked)."""

    agent_id: str
    policy_name: str
    agent_url: str
    ak_sha256: bytes  # of the AK's TPM public area
    location_key_sha256: bytes | None
    tls_certificate_sha256: bytes
    ek_certificate_sha256: bytes | None


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedToken:
    """A token as issued, without the compact JWS."""

    jti: str
    type: str
    audience: str
    workload_sha256: bytes
    issued_at: dt.datetime
    expires_at: dt.datetime
    record_seq: int
    revoked_at: dt.datetime | None


_TOKEN_COLUMNS = (
    TokenRow.jti,
    TokenRow.type,
    TokenRow.audience,
    TokenRow.workload_sha256,
    TokenRow.issued_at,
    TokenRow.expires_at,
    TokenRow.record_seq,
    TokenRow.revoked_at,
)


class FleetReads:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def events(
        self, *, agent_id: str | None = None, after_id: int = 0, limit: int = 100
    ) -> list[AgentEvent]:
        """Events with an id above ``after_id`` (of one agent, or all), oldest first; with
        ``after_id`` 0 the newest ``limit`` of them."""
        query = select(EventRecord)
        if agent_id is not None:
            query = query.where(EventRecord.agent_id == agent_id)
        with transaction(self._sessions) as session:
            if after_id > 0:
                rows = session.scalars(
                    query.where(EventRecord.id > after_id).order_by(EventRecord.id).limit(limit)
                )
                return [event_of(row) for row in rows]
            rows = session.scalars(query.order_by(EventRecord.id.desc()).limit(limit))
            return [event_of(row) for row in reversed(list(rows))]

    def identity(self, agent_id: str) -> HeldIdentity:
        with transaction(self._sessions) as session:
            agent = session.get(VerifiedAgent, agent_id)
            if agent is None:
                raise NotFound(f"agent {agent_id!r} is not under verification")
            location = agent.location_key_public
            return HeldIdentity(
                agent_id=agent.agent_id,
                policy_name=agent.policy_name,
                agent_url=agent.agent_url,
                ak_sha256=hashlib.sha256(agent.ak_public).digest(),
                location_key_sha256=hashlib.sha256(location).digest() if location else None,
                tls_certificate_sha256=hashlib.sha256(agent.tls_certificate).digest(),
                ek_certificate_sha256=agent.ek_certificate_sha256,
            )

    def newest_rounds(self, agent_id: str, count: int) -> list[EvidenceRecord]:
        """The agent's newest round records still held in full (newest first)."""
        with transaction(self._sessions) as session:
            rows = session.scalars(
                select(RecordRow)
                .where(RecordRow.agent_id == agent_id, RecordRow.kind == "round")
                .order_by(RecordRow.seq.desc())
                .limit(count)
            )
            return [decode_record(stored_body(row.body)) for row in rows]

    def tokens(self, agent_id: str, limit: int = 50) -> list[IssuedToken]:
        """The newest ``limit`` tokens issued to the agent, newest first (no JWS is read)."""
        with transaction(self._sessions) as session:
            rows = session.execute(
                select(*_TOKEN_COLUMNS)
                .where(TokenRow.agent_id == agent_id)
                .order_by(TokenRow.issued_at.desc(), TokenRow.jti)
                .limit(limit)
            )
            return [
                IssuedToken(
                    jti=row.jti,
                    type=row.type,
                    audience=row.audience,
                    workload_sha256=bytes(row.workload_sha256),
                    issued_at=as_utc(row.issued_at),
                    expires_at=as_utc(row.expires_at),
                    record_seq=row.record_seq,
                    revoked_at=as_utc(row.revoked_at) if row.revoked_at else None,
                )
                for row in rows
            ]
