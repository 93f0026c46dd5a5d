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
always has its deliveries, and nothing is delivered for a verdict that did not commit. So is a
kept record's transparency-log entry (``verifier.storage.log``): no kept record exists that the
log will not hold.
"""

from __future__ import annotations

import datetime as dt
import json
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from sqlalchemy import (
    Connection,
    DateTime,
    Dialect,
    Engine,
    Integer,
    Table,
    and_,
    bindparam,
    func,
    update,
)

from verifier.core.events import AgentEvent
from verifier.core.log_entry import RecordEntry
from verifier.core.record import GENESIS, encode_record, record_digest
from verifier.core.record_types import EvidenceRecord, RecordKind
from verifier.core.round_types import Notice
from verifier.core.states import AgentState, Outcome
from verifier.metrics import RECORD_BYTES
from verifier.storage import verdict_rows
from verifier.storage.log_queue import enqueue
from verifier.storage.models import VerifiedAgent
from verifier.storage.verdict_events import notice_event, transition_event
from verifier.storage.verdict_rows import (
    Chain,
    RowUpdate,
    insert_records,
    read_chain,
    steady_updates,
)

_TIME = DateTime(timezone=True)

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
    # An event to raise even without a transition (``RoundResult.notice``); its record is kept.
    notice: Notice | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Committed:
    record: EvidenceRecord
    digest: bytes
    kept: bool
    event: AgentEvent | None  # the transition, if the state changed (else the notice, if any)
    deliveries: tuple[int, ...] = ()  # webhook delivery ids to enqueue


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    why: Literal["fence", "state", "missing"]
    stored_fence: int = 0
    stored_state: AgentState | None = None


CommitResult = Committed | Refused


_AGENTS: Table = VerifiedAgent.__table__  # type: ignore[assignment]  # a declarative Table

# Statements built once (their compiled form is cached); the per-round ones are driver SQL
# (``verifier.storage.verdict_rows``).
_GUARD = and_(
    _AGENTS.c.agent_id == bindparam("b_agent_id"),
    # The fence and the chain position read above are the guard: another process may have
    # committed since (PostgreSQL re-evaluates this condition on the newest row version).
    _AGENTS.c.fence < bindparam("b_fence"),
    _AGENTS.c.chain_seq == bindparam("b_seq"),
)
_STEADY = {
    "fence": bindparam("b_fence"),
    "chain_seq": bindparam("b_new_seq"),
    "chain_head": bindparam("b_head"),
    "last_round_at": func.coalesce(bindparam("b_round_at", type_=_TIME), _AGENTS.c.last_round_at),
    "last_passed_at": func.coalesce(
        bindparam("b_passed_at", type_=_TIME), _AGENTS.c.last_passed_at
    ),
    "last_sample_at": func.coalesce(
        bindparam("b_sample_at", type_=_TIME), _AGENTS.c.last_sample_at
    ),
    "ima_entries_verified": func.coalesce(
        bindparam("b_ima", type_=Integer()), _AGENTS.c.ima_entries_verified
    ),
}
_UPDATE_TRANSITION = (
    update(_AGENTS)
    .where(_GUARD)
    .values(
        **_STEADY,
        state=bindparam("b_state"),
        state_since=bindparam("b_state_since", type_=_TIME),
        reason=bindparam("b_reason"),
        message=bindparam("b_message"),
        details=bindparam("b_details"),
    )
)


def _log_entry(pending: _Pending) -> RecordEntry:
    record = pending.record
    return RecordEntry(
        agent_id=record.agent_id, seq=record.seq, digest=pending.digest, ended_at=record.ended_at
    )


def _commit_time(accepted: Sequence[_Pending]) -> dt.datetime:
    return max((p.record.ended_at for p in accepted), default=dt.datetime.now(dt.UTC))


@dataclass(slots=True)
class _Pending:
    """A draft accepted so far in a group, waiting for its row update to be confirmed."""

    record: EvidenceRecord
    digest: bytes
    kept: bool
    transition: bool
    notice: Notice | None
    row: RowUpdate
    record_row: tuple[object, ...]
    body: bytes  # what the record row stores (compressed when kept)


def _passes(drafts: Sequence[VerdictDraft]) -> list[list[int]]:
    """Indexes of ``drafts`` in passes of at most one draft per agent: an agent's k-th draft
    goes to pass k (its order kept)."""
    passes: list[list[int]] = []
    seen: dict[str, int] = {}
    for index, draft in enumerate(drafts):
        level = seen.get(draft.record.agent_id, 0)
        seen[draft.record.agent_id] = level + 1
        if level == len(passes):
            passes.append([])
        passes[level].append(index)
    return passes


# The longest a verdict's transaction may run on PostgreSQL (a row lock held elsewhere, a server
# that stalls) before it fails and its rounds are marked ``record_failed``: the bound SQLite's
# busy timeout gives (``geoattest.db``). The group committer's writer waits for it; without a
# bound, one stuck transaction would hold up every later verdict of the process (ADR 23).
STATEMENT_TIMEOUT_SECONDS = 30.0


class VerdictStore:
    def __init__(
        self,
        engine: Engine,
        webhook_urls: Sequence[str] = (),
        *,
        statement_timeout: float = STATEMENT_TIMEOUT_SECONDS,
    ) -> None:
        self._engine = engine
        self._webhook_urls = tuple(webhook_urls)
        self._statement_timeout_ms = max(1, round(statement_timeout * 1000))

    def commit(self, drafts: Sequence[VerdictDraft]) -> list[CommitResult]:
        """Commit ``drafts`` in one transaction (the group commit of a worker process); each is
        accepted or refused on its own, in order. Raises (nothing committed) when the database
        fails.

        Usually a group holds one draft per agent (each writer holds the agent's lock); when it
        holds more (a round that gave up waiting for a locked database, and the next one), they
        are applied in passes of one draft per agent, each pass reading the rows its
        predecessor wrote, so each draft chains after the one before or loses on its fence."""
        results: list[CommitResult | None] = [None] * len(drafts)
        written = 0
        with self._engine.begin() as connection:
            if connection.dialect.name == "postgresql":  # for this transaction only
                connection.exec_driver_sql(
                    f"SET LOCAL statement_timeout = {self._statement_timeout_ms}"
                )
            for indexes in _passes(drafts):
                done, size = self._commit_pass(connection, [drafts[i] for i in indexes])
                written += size
                for index, result in zip(indexes, done, strict=True):
                    results[index] = result
        RECORD_BYTES.inc(written)  # counted once the transaction committed
        return [result for result in results if result is not None]

    def _commit_pass(
        self, connection: Connection, drafts: Sequence[VerdictDraft]
    ) -> tuple[list[CommitResult], int]:
        """One draft per agent; returns the results and the record bytes written. The
        steady-state row updates run as one ``executemany``; only when fewer rows than expected
        were updated (another process committed meanwhile) is each agent's row read again to
        find which drafts lost."""
        chain = read_chain(connection, sorted({d.record.agent_id for d in drafts}))
        dialect = connection.dialect
        results: list[CommitResult | _Pending] = [self._prepare(d, chain, dialect) for d in drafts]
        pending = [r for r in results if isinstance(r, _Pending)]
        lost = self._apply(connection, pending)
        accepted = [p for p in pending if p.record.agent_id not in lost]
        written = 0
        if accepted:
            insert_records(connection, [p.record_row for p in accepted])
            written = sum(len(p.body) for p in accepted)
        # Kept records go into the transparency log with their commit (the others when they
        # fold, ``verifier.storage.records``).
        enqueue(connection, [_log_entry(p) for p in accepted if p.kept], _commit_time(accepted))
        return [self._finish(connection, r, chain, lost) for r in results], written

    def _prepare(
        self, draft: VerdictDraft, chain: Chain, dialect: Dialect
    ) -> CommitResult | _Pending:
        agent_id = draft.record.agent_id
        if agent_id not in chain:
            return Refused(why="missing")
        seq, stored_head, state, fence, last_sample = chain[agent_id]
        head = stored_head or GENESIS
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
            or draft.notice is not None
            or record.kind is not RecordKind.ROUND
            or record.outcome in _ALWAYS_KEPT
            or sampled
        )
        encoded = encode_record(record)
        digest = record_digest(encoded)
        row = RowUpdate(
            agent_id=agent_id,
            fence=draft.fence,
            seq=seq,
            new_seq=record.seq,
            head=digest,
            round_at=ended if record.kind is RecordKind.ROUND else None,
            passed_at=ended if draft.passed else None,
            sample_at=ended if kept else None,
            ima=draft.ima_entries_verified,
        )
        body = zlib.compress(encoded, 6) if kept else encoded
        # Kept records are compressed; the others live only for the hot window and are stored
        # as they are (zlib releases the GIL, which costs a threaded worker dearly).
        record_row = verdict_rows.record_row(
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
            body=body,
            size=len(encoded),
            dialect=dialect,
        )
        return _Pending(
            record=record,
            digest=digest,
            kept=kept,
            transition=transition,
            notice=None if transition else draft.notice,
            row=row,
            record_row=record_row,
            body=body,
        )

    def _apply(self, connection: Connection, pending: Sequence[_Pending]) -> set[str]:
        """Run the guarded row updates; returns the agents whose update did not apply."""
        lost: set[str] = set()
        for item in (p for p in pending if p.transition):  # rare: one statement each
            record = item.record
            params = item.row.params()
            params.update(
                b_state=record.to_state.value,
                b_state_since=record.ended_at,
                b_reason=record.reason.value if record.reason else None,
                b_message=record.message or None,
                b_details=json.dumps(dict(record.details)) if record.details else None,
            )
            if connection.execute(_UPDATE_TRANSITION, params).rowcount != 1:
                lost.add(record.agent_id)
        steady = [p.row for p in pending if not p.transition]
        if steady and steady_updates(connection, steady) != len(steady):
            # The head (this record's digest) tells whose update the row holds: after a
            # Sentinel failover two writers can share a fence and a sequence number.
            current = {
                agent_id: (fence, seq, bytes(head or b""))
                for agent_id, (seq, head, _, fence, _) in read_chain(
                    connection, [u.agent_id for u in steady]
                ).items()
            }
            lost |= {
                u.agent_id
                for u in steady
                if current.get(u.agent_id) != (u.fence, u.new_seq, bytes(u.head))
            }
        return lost

    def _finish(
        self,
        connection: Connection,
        result: CommitResult | _Pending,
        chain: Chain,
        lost: set[str],
    ) -> CommitResult:
        if not isinstance(result, _Pending):
            return result
        record = result.record
        if record.agent_id in lost:
            _, _, state, fence, _ = chain[record.agent_id]
            return Refused(why="fence", stored_fence=fence, stored_state=state)
        event: AgentEvent | None = None
        deliveries: tuple[int, ...] = ()
        if result.transition:
            event, deliveries = transition_event(connection, record, self._webhook_urls)
        elif result.notice is not None:  # no transition, no revocation, no webhook
            event = notice_event(connection, record, result.notice)
        return Committed(
            record=record,
            digest=result.digest,
            kept=result.kept,
            event=event,
            deliveries=deliveries,
        )
