"""The statements a verdict's commit runs for every round, as driver SQL.

They run once per round of every agent: as driver SQL (one ``executemany`` per group), they skip
SQLAlchemy's per-statement compilation and parameter processing (measured in
docs/benchmarks.md, evidence records). Each has the same columns and guard as the Core
statement beside it in ``verifier.storage.verdicts``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, DateTime

_TIME = DateTime(timezone=True)

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


def steady_updates(connection: Connection, updates: Sequence[RowUpdate]) -> int:
    """``_STEADY_SQL`` for each update as one ``executemany`` in the driver's parameter style
    (times encoded as SQLAlchemy would); returns how many rows changed."""
    dialect = connection.dialect
    sql = _STEADY_SQL if dialect.paramstyle == "qmark" else _STEADY_SQL.replace("?", "%s")
    processor = _TIME.bind_processor(dialect)

    def to_db(value: dt.datetime | None) -> object:
        return processor(value) if processor is not None and value is not None else value

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
    return int(connection.exec_driver_sql(sql, rows).rowcount)
