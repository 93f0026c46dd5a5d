"""Evidence records at rest: paging, fetching one, folding past the hot window, retention.

Full records are kept for good when they matter (failure, transition, reboot, operator action,
one sampled round per agent per ``sample_every``); every other round is kept in full for the hot
window only, then *folded*: a run of consecutive such records becomes one ``RecordFold`` that keeps
the chain's two ends (the digest before the run and the digest of its last record) and the count
of each outcome, so the kept records on both sides still link (ADR 6 has the figures). A fold is
made once, for a whole gap between kept records, and goes into the transparency log as it is
made (ADR 10).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import delete, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from geoattest.db import as_utc, transaction
from geoattest.errors import Conflict, NotFound
from verifier.core.log_entry import FoldEntry
from verifier.core.record import decode_record
from verifier.core.record_types import EvidenceRecord
from verifier.storage.log_queue import enqueue
from verifier.storage.models import RecordFold, RecordRow

FOLD_BATCH = 20_000  # records folded per transaction
_DELETE_CHUNK = 500
_FOLD_COLUMNS = (
    RecordRow.id,
    RecordRow.agent_id,
    RecordRow.seq,
    RecordRow.ended_at,
    RecordRow.outcome,
    RecordRow.prev,
    RecordRow.digest,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordSummary:
    seq: int
    round_id: str
    kind: str
    started_at: dt.datetime
    ended_at: dt.datetime
    outcome: str | None
    reason: str | None
    kept: bool
    digest: bytes
    prev: bytes
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FoldSummary:
    first_seq: int
    last_seq: int
    count: int
    first_at: dt.datetime
    last_at: dt.datetime
    prev: bytes
    head: bytes
    outcomes: dict[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredRecord:
    record: EvidenceRecord
    canonical: bytes
    digest: bytes
    kept: bool


class RecordStore:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def page(
        self,
        agent_id: str,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        after_seq: int = 0,
        limit: int = 100,
    ) -> list[RecordSummary | FoldSummary]:
        """Records and folds of ``agent_id`` in chain order, from ``after_seq`` on."""
        with transaction(self._sessions) as session:
            rows = select(RecordRow).where(
                RecordRow.agent_id == agent_id, RecordRow.seq > after_seq
            )
            folds = select(RecordFold).where(
                RecordFold.agent_id == agent_id, RecordFold.last_seq > after_seq
            )
            if since is not None:
                rows = rows.where(RecordRow.ended_at >= since)
                folds = folds.where(RecordFold.last_at >= since)
            if until is not None:
                rows = rows.where(RecordRow.started_at <= until)
                folds = folds.where(RecordFold.first_at <= until)
            found: list[RecordSummary | FoldSummary] = [
                _summary(r) for r in session.scalars(rows.order_by(RecordRow.seq).limit(limit))
            ]
            found += [
                _fold(f) for f in session.scalars(folds.order_by(RecordFold.first_seq).limit(limit))
            ]
        found.sort(key=lambda item: item.seq if isinstance(item, RecordSummary) else item.first_seq)
        return found[:limit]

    def get(self, agent_id: str, round_id: str) -> StoredRecord:
        """One record by its round id; ``NotFound`` if there is none (or it was folded)."""
        with transaction(self._sessions) as session:
            row = session.scalars(
                select(RecordRow).where(
                    RecordRow.agent_id == agent_id, RecordRow.round_id == round_id
                )
            ).first()
            if row is None:
                raise NotFound(f"no evidence record {round_id!r} of agent {agent_id!r}")
            canonical = stored_body(row.body)
            return StoredRecord(
                record=decode_record(canonical),
                canonical=canonical,
                digest=row.digest,
                kept=row.kept,
            )

    def latest_passed(self, agent_id: str) -> StoredRecord | None:
        """The agent's newest passed round, in full (what its tokens are built from); None when
        it has none kept (a passed round is always kept for the hot window at least)."""
        with transaction(self._sessions) as session:
            row = session.scalars(
                select(RecordRow)
                .where(
                    RecordRow.agent_id == agent_id,
                    RecordRow.kind == "round",
                    RecordRow.outcome == "passed",
                )
                .order_by(RecordRow.seq.desc())
                .limit(1)
            ).first()
            if row is None:
                return None
            canonical = stored_body(row.body)
            return StoredRecord(
                record=decode_record(canonical),
                canonical=canonical,
                digest=row.digest,
                kept=row.kept,
            )

    def bytes_stored(self, agent_ids: Iterable[str] | None = None) -> int:
        """Bytes the records and folds take in the database (compressed bodies + columns)."""
        with transaction(self._sessions) as session:
            rows = select(RecordRow.body, RecordRow.round_id)
            folds = select(RecordFold.outcomes)
            if agent_ids is not None:
                ids = list(agent_ids)
                rows = rows.where(RecordRow.agent_id.in_(ids))
                folds = folds.where(RecordFold.agent_id.in_(ids))
            total = sum(len(body) + len(rid) + _ROW_OVERHEAD for body, rid in session.execute(rows))
            total += sum(len(outcomes) + _FOLD_OVERHEAD for (outcomes,) in session.execute(folds))
            return total

    def fold(self, *, now: dt.datetime, hot_window: dt.timedelta) -> int:
        """Fold records older than the hot window that are not kept; returns how many.

        A run is folded once it is *closed*: the record after it is kept (so the run is the
        whole gap between two kept records), or none follows and its last record is older than
        two hot windows (an agent that stopped). A fold is never extended afterwards: it goes
        into the transparency log as it is made, in the same transaction. Raises ``Conflict``
        (that batch unchanged) when another compaction deleted the rows first: two boxes'
        beats may start one each (ADR 20), and a run must not be folded twice."""
        cutoff = now - hot_window
        abandoned = now - 2 * hot_window
        folded = 0
        after: tuple[str, int] = ("", 0)
        while True:
            with transaction(self._sessions) as session:
                rows = session.execute(
                    select(*_FOLD_COLUMNS)
                    .where(
                        RecordRow.kept.is_(False),
                        RecordRow.ended_at < cutoff,
                        tuple_(RecordRow.agent_id, RecordRow.seq) > after,
                    )
                    .order_by(RecordRow.agent_id, RecordRow.seq)
                    .limit(FOLD_BATCH)
                ).all()
                if not rows:
                    return folded
                runs = _runs(rows)
                if len(rows) == FOLD_BATCH and len(runs) > 1:
                    runs.pop()  # it may go on in the next batch
                last = runs[-1][-1]
                after = (last.agent_id, last.seq)
                done = _closed(session, runs, abandoned)
                entries = [_fold_run(session, run) for run in done]
                enqueue(session, entries, now)
                ids = [row.id for run in done for row in run]
                for start in range(0, len(ids), _DELETE_CHUNK):
                    chunk = ids[start : start + _DELETE_CHUNK]
                    gone = session.execute(delete(RecordRow).where(RecordRow.id.in_(chunk)))
                    if gone.rowcount != len(chunk):  # type: ignore[attr-defined]  # CursorResult
                        raise Conflict("another compaction folded these records meanwhile")
                folded += len(ids)

    def expire(self, *, now: dt.datetime, retention: dt.timedelta) -> int:
        """Delete records and folds that ended before the retention period; returns how many."""
        cutoff = now - retention
        with transaction(self._sessions) as session:
            gone = session.execute(delete(RecordRow).where(RecordRow.ended_at < cutoff))
            folds = session.execute(delete(RecordFold).where(RecordFold.last_at < cutoff))
            return int(gone.rowcount) + int(folds.rowcount)  # type: ignore[attr-defined]  # CursorResult


def stored_body(body: bytes) -> bytes:
    """A record's canonical bytes from its stored body: kept records are zlib-compressed, hot
    ones stored as they are (canonical JSON starts with ``{``, a zlib stream never does)."""
    return body if body[:1] == b"{" else zlib.decompress(body)


_ROW_OVERHEAD = 150  # the fixed-size columns of a record row, roughly (digests, times, ids)
_FOLD_OVERHEAD = 160


def _runs(rows: Sequence[_Row]) -> list[list[_Row]]:
    """Maximal runs of consecutive seq numbers of one agent."""
    runs: list[list[_Row]] = []
    for row in rows:
        last = runs[-1][-1] if runs else None
        if last is not None and last.agent_id == row.agent_id and last.seq + 1 == row.seq:
            runs[-1].append(row)
        else:
            runs.append([row])
    return runs


def _closed(
    session: Session, runs: Sequence[list[_Row]], abandoned: dt.datetime
) -> list[list[_Row]]:
    """The runs that may fold now (see ``RecordStore.fold``): their successors looked up in
    one query per chunk."""
    kept: dict[tuple[str, int], bool] = {}
    ends = [(run[-1].agent_id, run[-1].seq + 1) for run in runs]
    for start in range(0, len(ends), _DELETE_CHUNK):
        rows = session.execute(
            select(RecordRow.agent_id, RecordRow.seq, RecordRow.kept).where(
                tuple_(RecordRow.agent_id, RecordRow.seq).in_(ends[start : start + _DELETE_CHUNK])
            )
        )
        kept.update({(agent_id, seq): bool(flag) for agent_id, seq, flag in rows})
    return [
        run
        for run, end in zip(runs, ends, strict=True)
        if kept.get(end, as_utc(run[-1].ended_at) < abandoned)
    ]


def _fold_run(session: Session, run: list[_Row]) -> FoldEntry:
    """Store ``run`` as one fold and return its log entry."""
    first, last = run[0], run[-1]
    counts: dict[str, int] = {}
    for row in run:
        counts[row.outcome or "none"] = counts.get(row.outcome or "none", 0) + 1
    ends = [as_utc(row.ended_at) for row in run]
    gap = max((b - a for a, b in itertools.pairwise(ends)), default=dt.timedelta(0))
    entry = FoldEntry(
        agent_id=first.agent_id,
        first_seq=first.seq,
        last_seq=last.seq,
        first_at=ends[0],
        last_at=ends[-1],
        prev=bytes(first.prev),
        head=bytes(last.digest),
        outcomes=counts,
        max_gap_ms=round(gap.total_seconds() * 1000),
    )
    session.add(
        RecordFold(
            agent_id=entry.agent_id,
            first_seq=entry.first_seq,
            last_seq=entry.last_seq,
            count=entry.count,
            first_at=entry.first_at,
            last_at=entry.last_at,
            prev=entry.prev,
            head=entry.head,
            outcomes=json.dumps(counts, sort_keys=True),
        )
    )
    return entry


def _summary(row: RecordRow) -> RecordSummary:
    return RecordSummary(
        seq=row.seq,
        round_id=row.round_id,
        kind=row.kind,
        started_at=as_utc(row.started_at),
        ended_at=as_utc(row.ended_at),
        outcome=row.outcome,
        reason=row.reason,
        kept=row.kept,
        digest=row.digest,
        prev=row.prev,
        size=row.size,
    )


def _fold(fold: RecordFold) -> FoldSummary:
    return FoldSummary(
        first_seq=fold.first_seq,
        last_seq=fold.last_seq,
        count=fold.count,
        first_at=as_utc(fold.first_at),
        last_at=as_utc(fold.last_at),
        prev=fold.prev,
        head=fold.head,
        outcomes=json.loads(fold.outcomes),
    )


class _Row(Protocol):  # the columns ``fold`` selects (a SQLAlchemy Row)
    id: int
    agent_id: str
    seq: int
    ended_at: dt.datetime
    outcome: str | None
    prev: bytes
    digest: bytes
