"""Recording every release and refusal (SQL, the project's migrations).

Each entry is also owed to the verifier's transparency log: ``pending`` lists the entries not
yet accepted there, oldest first, and ``mark_logged`` records that they were
(``keyrelease.log_forward`` sends them). ``record`` calls ``on_record`` after its commit, so the
forwarder wakes at once instead of at its next poll."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.orm import Session

from geoattest.db import as_utc
from keyrelease.models import KeyReleaseRow

__all__ = ["ReleaseEntry", "ReleaseLedger"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseEntry:
    at: dt.datetime
    key_id: str
    outcome: str  # released | refused
    reason: str | None = None
    message: str | None = None
    agent_id: str | None = None
    token_jti: str | None = None
    workload_sha256: bytes | None = None
    zone_id: str | None = None
    record_seq: int | None = None
    id: int | None = None  # set once stored


class ReleaseLedger:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.on_record: Callable[[], None] = lambda: None

    def record(self, entry: ReleaseEntry) -> None:
        self._insert(entry)
        self.on_record()

    def pending(self, limit: int = 100) -> list[ReleaseEntry]:
        """Entries the transparency log has not accepted yet, oldest first."""
        query = (
            select(KeyReleaseRow)
            .where(KeyReleaseRow.logged_at.is_(None))
            .order_by(KeyReleaseRow.id)
            .limit(limit)
        )
        with Session(self._engine) as session:
            return [_entry(row) for row in session.scalars(query)]

    def mark_logged(self, ids: Sequence[int], at: dt.datetime) -> None:
        if not ids:
            return
        with self._engine.begin() as connection:
            connection.execute(
                update(KeyReleaseRow).where(KeyReleaseRow.id.in_(ids)).values(logged_at=at)
            )

    def _insert(self, entry: ReleaseEntry) -> None:
        with self._engine.begin() as connection:
            connection.execute(
                insert(KeyReleaseRow).values(
                    at=entry.at,
                    key_id=entry.key_id,
                    outcome=entry.outcome,
                    reason=entry.reason,
                    message=(entry.message or "")[:1000] or None,
                    agent_id=entry.agent_id,
                    token_jti=entry.token_jti,
                    workload_sha256=entry.workload_sha256,
                    zone_id=entry.zone_id,
                    record_seq=entry.record_seq,
                )
            )

    def entries(self, key_id: str | None = None, limit: int = 1000) -> list[ReleaseEntry]:
        query = select(KeyReleaseRow).order_by(KeyReleaseRow.id).limit(limit)
        if key_id is not None:
            query = query.where(KeyReleaseRow.key_id == key_id)
        with Session(self._engine) as session:
            return [_entry(row) for row in session.scalars(query)]


def _entry(row: KeyReleaseRow) -> ReleaseEntry:
    return ReleaseEntry(
        id=row.id,
        at=as_utc(row.at),
        key_id=row.key_id,
        outcome=row.outcome,
        reason=row.reason,
        message=row.message,
        agent_id=row.agent_id,
        token_jti=row.token_jti,
        workload_sha256=row.workload_sha256,
        zone_id=row.zone_id,
        record_seq=row.record_seq,
    )
