"""Committing a verdict: the evidence record, the agent's state and lease, its event and webhook
deliveries, in one SQL transaction, fenced.

This is the one writer of agent state. Every writer (round, operator action, watchdog) holds the
agent's Redis lock, which hands out a fencing token: a number that grows with every lock taken.
A commit applies only while its fence is above the one stored on the agent row and the chain has
not moved since it was read, so a writer that took the lock earlier than another (a stalled round,
a worker that resumed after its lock expired) changes nothing, whichever of the two reaches the
database first. The record is chained inside the transaction (``seq`` = stored + 1, ``prev`` =
stored head), so the chain cannot fork.

Webhook deliveries are rows written in the same transaction (an outbox): a committed failure
always has its deliveries, and nothing is delivered for a verdict that did not commit.
"""

from __future__ import annotations

import datetime as dt
import json
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from geoattest.db import as_utc, transaction
from verifier.core.events import AgentEvent
from verifier.core.record import (
    GENESIS,
    EvidenceRecord,
    RecordKind,
    encode_record,
    record_digest,
)
from verifier.core.states import AgentState, Outcome
from verifier.storage.models import EventRecord, RecordRow, VerifiedAgent, WebhookDelivery

# Outcomes whose records are kept in full for good, whatever the sampling says.
_ALWAYS_KEPT = frozenset({Outcome.INTEGRITY_FAILURE, Outcome.REBOOTED})


@dataclass(frozen=True, slots=True, kw_only=True)
class VerdictDraft:
    """What a writer wants committed. ``record``'s ``seq``, ``prev``, ``from_state`` and
    ``to_state`` are filled in by the commit from the stored row."""

    record: EvidenceRecord
    fence: int
    # The new state given the stored one; ``None`` refuses (e.g. the agent was paused meanwhile).
    decide: Callable[[AgentState], AgentState | None]
    passed: bool = False  # a passed round renews the lease
    ima_entries_verified: int | None = None
    sample_every: dt.timedelta = dt.timedelta(minutes=5)


@dataclass(frozen=True, slots=True, kw_only=True)
class Committed:
    record: EvidenceRecord
    digest: bytes
    kept: bool
    event: AgentEvent | None  # the transition, if the state changed
    deliveries: tuple[int, ...] = ()  # webhook delivery ids to enqueue


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    why: Literal["fence", "state", "missing"]
    stored_fence: int = 0
    stored_state: AgentState | None = None


CommitResult = Committed | Refused


class VerdictStore:
    def __init__(self, sessions: sessionmaker[Session], webhook_urls: Sequence[str] = ()) -> None:
        self._sessions = sessions
        self._webhook_urls = tuple(webhook_urls)

    def commit(self, drafts: Sequence[VerdictDraft]) -> list[CommitResult]:
        """Commit ``drafts`` in one transaction (the group commit of a worker process); each is
        accepted or refused on its own. Raises (nothing committed) when the database fails."""
        with transaction(self._sessions) as session:
            ids = sorted({d.record.agent_id for d in drafts})
            rows = {
                row.agent_id: row
                for row in session.execute(
                    select(
                        VerifiedAgent.agent_id,
                        VerifiedAgent.state,
                        VerifiedAgent.fence,
                        VerifiedAgent.chain_seq,
                        VerifiedAgent.chain_head,
                        VerifiedAgent.last_sample_at,
                    ).where(VerifiedAgent.agent_id.in_(ids))
                )
            }
            chain: dict[str, tuple[int, bytes, AgentState, int, dt.datetime | None]] = {
                agent_id: (
                    row.chain_seq,
                    row.chain_head or GENESIS,
                    AgentState(row.state),
                    row.fence,
                    as_utc(row.last_sample_at) if row.last_sample_at else None,
                )
                for agent_id, row in rows.items()
            }
            results: list[CommitResult] = []
            for draft in drafts:
                results.append(self._commit_one(session, draft, chain))
            return results

    def _commit_one(
        self,
        session: Session,
        draft: VerdictDraft,
        chain: dict[str, tuple[int, bytes, AgentState, int, dt.datetime | None]],
    ) -> CommitResult:
        agent_id = draft.record.agent_id
        if agent_id not in chain:
            return Refused(why="missing")
        seq, head, state, fence, last_sample = chain[agent_id]
        if draft.fence <= fence:
            return Refused(why="fence", stored_fence=fence, stored_state=state)
        new_state = draft.decide(state)
        if new_state is None:
            return Refused(why="state", stored_fence=fence, stored_state=state)
        record = replace(draft.record, seq=seq + 1, prev=head, from_state=state, to_state=new_state)
        ended = record.ended_at
        transition = new_state is not state
        sampled = last_sample is None or ended - last_sample >= draft.sample_every
        kept = (
            transition
            or record.kind is not RecordKind.ROUND
            or record.outcome in _ALWAYS_KEPT
            or sampled
        )
        encoded = encode_record(record)
        digest = record_digest(encoded)
        values: dict[str, object] = {
            "fence": draft.fence,
            "chain_seq": record.seq,
            "chain_head": digest,
        }
        if record.kind is RecordKind.ROUND:
            values["last_round_at"] = ended
        if draft.passed:
            values["last_passed_at"] = ended
        if draft.ima_entries_verified is not None:
            values["ima_entries_verified"] = draft.ima_entries_verified
        if kept:
            values["last_sample_at"] = ended
        if transition:
            values.update(
                state=new_state.value,
                state_since=ended,
                reason=record.reason.value if record.reason else None,
                message=record.message or None,
                details=json.dumps(dict(record.details)) if record.details else None,
            )
        # The fence and the chain position read above are the guard: another process may have
        # committed since (PostgreSQL re-evaluates this condition on the newest row version).
        updated = session.execute(
            update(VerifiedAgent)
            .where(
                VerifiedAgent.agent_id == agent_id,
                VerifiedAgent.fence < draft.fence,
                VerifiedAgent.chain_seq == seq,
            )
            .values(**values)
        )
        if updated.rowcount != 1:  # type: ignore[attr-defined]  # CursorResult of an UPDATE
            return Refused(why="fence", stored_fence=fence, stored_state=state)
        chain[agent_id] = (
            record.seq,
            digest,
            new_state,
            draft.fence,
            ended if kept else last_sample,
        )
        session.execute(
            insert(RecordRow).values(
                agent_id=agent_id,
                seq=record.seq,
                kind=record.kind.value,
                round_id=record.round_id,
                started_at=record.started_at,
                ended_at=ended,
                outcome=record.outcome.value if record.outcome else None,
                reason=record.reason.value if record.reason else None,
                kept=kept,
                digest=digest,
                prev=record.prev,
                body=zlib.compress(encoded, 6),
                size=len(encoded),
            )
        )
        event: AgentEvent | None = None
        deliveries: tuple[int, ...] = ()
        if transition:
            event, deliveries = self._event(session, record)
        return Committed(
            record=record, digest=digest, kept=kept, event=event, deliveries=deliveries
        )

    def _event(
        self, session: Session, record: EvidenceRecord
    ) -> tuple[AgentEvent, tuple[int, ...]]:
        event_id = session.execute(
            insert(EventRecord)
            .values(
                agent_id=record.agent_id,
                at=record.ended_at,
                from_state=record.from_state.value,
                to_state=record.to_state.value,
                reason=record.reason.value if record.reason else None,
                message=record.message or None,
                details=json.dumps(dict(record.details)) if record.details else None,
                round_id=record.round_id,
                record_seq=record.seq,
            )
            .returning(EventRecord.id)
        ).scalar_one()
        event = AgentEvent(
            id=event_id,
            agent_id=record.agent_id,
            at=record.ended_at,
            from_state=record.from_state,
            to_state=record.to_state,
            reason=record.reason,
            message=record.message or None,
            details=record.details,
            round_id=record.round_id,
            record_seq=record.seq,
        )
        deliveries: tuple[int, ...] = ()
        if record.to_state is AgentState.FAILED and self._webhook_urls:
            deliveries = tuple(
                session.execute(
                    insert(WebhookDelivery)
                    .values(
                        event_id=event_id,
                        url=url,
                        status="pending",
                        attempts=0,
                        updated_at=record.ended_at,
                    )
                    .returning(WebhookDelivery.id)
                ).scalar_one()
                for url in self._webhook_urls
            )
        return event, deliveries
