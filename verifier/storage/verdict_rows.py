"""The statements a verdict's commit runs for every round, as driver SQL.

They run for every round of every agent: as driver SQL on the transaction's own DB-API cursor,
one ``executemany`` (or one ``SELECT``) per group of rounds, they skip SQLAlchemy's statement
compilation, parameter and result processing and ``CursorResult`` (even ``exec_driver_sql``
cost four times the query itself; measured in docs/benchmarks.md, evidence records). They are
not echoed by SQLAlchemy's statement logging. Each has the columns and guard
of the Core statement or model it stands for in ``verifier.storage.verdicts`` and
``verifier.storage.models``; times go in and come out as SQLAlchemy's column type has them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, DateTime, Dialect
from sqlalchemy.engine.interfaces import DBAPICursor

from geoattest.db import as_utc
from verifier.core.states import AgentState

_TIME = DateTime(timezone=True)

# ``verdicts._READ``: the chain position, state, fence and sample time of some agents.
_READ_SQL = (
    "SELECT agent_id, state, fence, chain_seq, chain_head, last_sample_at "
    "FROM verifier_agents WHERE agent_id IN ({marks})"
)
# ``RecordRow``: one evidence record (the id is the table's own); ``record_row``'s order.
_INSERT_SQL = (
    "INSERT INTO verifier_records (agent_id, seq, kind, round_id, started_at, ended_at, "
    "outcome, reason, kept, digest, prev, body, size) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# The steady-state update (no transition): same columns and guard as ``verdicts._STEADY``.
_STEADY_SQL = (
    "UPDATE verifier_agents SET fence = ?, chain_seq = ?, chain_head = ?, "
    "last_round_at = COALESCE(?, last_round_at), last_passed_at = COALESCE(?, last_passed_at), "
    "last_sample_at = COALESCE(?, last_sample_at), "
    "ima_entries_verified = COALESCE(?, ima_entries_verified) "
    "WHERE agent_id = ? AND fence < ? AND chain_seq = ?"
)


@dataclass(frozen=True, slots=True)
class RowUpdate:
    agent_id: str
    fence: int
    seq: int  # the chain position read: the guard
    new_seq: int
    head: bytes
    round_at: dt.datetime | None
    passed_at: dt.datetime | None
    sample_at: dt.datetime | None
    ima: int | None

    def params(self) -> dict[str, object]:
        return {
            "b_agent_id": self.agent_id,
            "b_fence": self.fence,
            "b_seq": self.seq,
            "b_new_seq": self.new_seq,
            "b_head": self.head,
            "b_round_at": self.round_at,
            "b_passed_at": self.passed_at,
            "b_sample_at": self.sample_at,
            "b_ima": self.ima,
        }


# agent id -> (chain seq, chain head, state, fence, last sample time)
Chain = dict[str, tuple[int, bytes | None, AgentState, int, dt.datetime | None]]


@dataclass(frozen=True, slots=True)
class _Driver:
    """A dialect's statements in its parameter style and its time conversions."""

    qmark: bool
    time_in: Callable[[Any], Any] | None
    time_out: Callable[[Any], Any] | None

    def sql(self, text: str) -> str:
        return text if self.qmark else text.replace("?", "%s")

    def to_db(self, value: dt.datetime | None) -> object:
        return self.time_in(value) if self.time_in is not None and value is not None else value

    def from_db(self, value: object) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite's text; ISO 8601, as SQLAlchemy writes it
            try:
                return as_utc(dt.datetime.fromisoformat(value))
            except ValueError:
                pass  # some other form: the column type's own parser decides
        if self.time_out is not None:
            value = self.time_out(value)
        assert isinstance(value, dt.datetime)  # noqa: S101  # the column's own type
        return as_utc(value)


# Per dialect class and parameter style (not per dialect object: engines come and go).
_DRIVERS: dict[tuple[type[Dialect], str], _Driver] = {}


def _driver(dialect: Dialect) -> _Driver:
    key = (type(dialect), dialect.paramstyle)
    driver = _DRIVERS.get(key)
    if driver is None:
        driver = _DRIVERS[key] = _make_driver(dialect)
    return driver


def _make_driver(dialect: Dialect) -> _Driver:
    impl = _TIME.dialect_impl(dialect)
    return _Driver(
        qmark=dialect.paramstyle == "qmark",
        time_in=impl.bind_processor(dialect),
        time_out=impl.result_processor(dialect, None),
    )


def read_chain(connection: Connection, agent_ids: Sequence[str]) -> Chain:
    """The stored chain position, state, fence and last sample time of ``agent_ids`` (agents
    with no row are absent)."""
    if not agent_ids:
        return {}
    driver = _driver(connection.dialect)
    sql = driver.sql(_READ_SQL.format(marks=", ".join("?" for _ in agent_ids)))
    with _cursor(connection) as cursor:
        cursor.execute(sql, tuple(agent_ids))
        rows = cursor.fetchall()
    return {
        agent_id: (seq, head, AgentState(state), fence, driver.from_db(sample))
        for agent_id, state, fence, seq, head, sample in rows
    }


def insert_records(connection: Connection, rows: Sequence[tuple[object, ...]]) -> None:
    """Insert evidence record rows (``record_row``'s tuples) as one ``executemany``."""
    if rows:
        with _cursor(connection) as cursor:
            cursor.executemany(_driver(connection.dialect).sql(_INSERT_SQL), rows)


def record_row(
    *,
    agent_id: str,
    seq: int,
    kind: str,
    round_id: str,
    started_at: dt.datetime,
    ended_at: dt.datetime,
    outcome: str | None,
    reason: str | None,
    kept: bool,
    digest: bytes,
    prev: bytes,
    body: bytes,
    size: int,
    dialect: Dialect,
) -> tuple[object, ...]:
    """One ``RecordRow`` in ``_INSERT_SQL``'s column order, its times as the dialect stores them."""
    driver = _driver(dialect)
    return (
        agent_id, seq, kind, round_id, driver.to_db(started_at), driver.to_db(ended_at),
        outcome, reason, kept, digest, prev, body, size,
    )  # fmt: skip


def steady_updates(connection: Connection, updates: Sequence[RowUpdate]) -> int:
    """``_STEADY_SQL`` for each update as one ``executemany`` in the driver's parameter style
    (times encoded as SQLAlchemy's column type does); returns how many rows changed."""
    driver = _driver(connection.dialect)
    to_db = driver.to_db
    rows = [
        (
            u.fence,
            u.new_seq,
            u.head,
            to_db(u.round_at),
            to_db(u.passed_at),
            to_db(u.sample_at),
            u.ima,
            u.agent_id,
            u.fence,
            u.seq,
        )
        for u in updates
    ]
    with _cursor(connection) as cursor:
        cursor.executemany(driver.sql(_STEADY_SQL), rows)
        return int(cursor.rowcount)


@contextmanager
def _cursor(connection: Connection) -> Iterator[DBAPICursor]:
    """A DB-API cursor on ``connection``'s own DB-API connection: inside its transaction."""
    cursor = connection.connection.cursor()
    try:
        yield cursor
    finally:
        cursor.close()
