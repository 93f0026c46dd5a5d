"""Where the export finds the tokens issued in a window: the ``TokenSource`` seam.

The token service stores what it issued in ``verifier_tokens`` (its own migration); until that
table exists, ``SqlTokenSource`` finds none. It reads the table by reflection, so the export
depends only on these columns: ``jti``, ``agent_id``, ``type`` (or ``token_type``),
``audience``, ``workload_hash`` (or ``workload``), ``issued_at``, ``expires_at``,
``record_seq``, ``token`` (or ``compact``), ``revoked_at``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Protocol

from sqlalchemy import Engine, MetaData, Table, inspect, select

from geoattest.db import as_utc
from verifier.export.layout import IssuedToken

TOKENS_TABLE = "verifier_tokens"


class TokenSource(Protocol):
    def tokens(self, agent_id: str, start: dt.datetime, end: dt.datetime) -> list[IssuedToken]:
        """Tokens of ``agent_id`` issued in ``[start, end]``, oldest first."""
        ...


class NoTokens:
    def tokens(self, agent_id: str, start: dt.datetime, end: dt.datetime) -> list[IssuedToken]:
        return []


class SqlTokenSource:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._table: Table | None = None

    def tokens(self, agent_id: str, start: dt.datetime, end: dt.datetime) -> list[IssuedToken]:
        table = self._reflect()
        if table is None:
            return []
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(table)
                .where(
                    table.c.agent_id == agent_id,
                    table.c.issued_at >= start,
                    table.c.issued_at <= end,
                )
                .order_by(table.c.issued_at)
            )
            return [_token(dict(row._mapping)) for row in rows]

    def _reflect(self) -> Table | None:
        if self._table is None and inspect(self._engine).has_table(TOKENS_TABLE):
            self._table = Table(TOKENS_TABLE, MetaData(), autoload_with=self._engine)
        return self._table


def _pick(row: Mapping[str, Any], *names: str) -> Any:  # noqa: ANN401  # a column of either name
    for name in names:
        if name in row:
            return row[name]
    return None


def _time(value: Any) -> dt.datetime | None:  # noqa: ANN401  # a DateTime column
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return as_utc(value)


def _token(row: Mapping[str, Any]) -> IssuedToken:
    token = _pick(row, "token", "compact")
    issued, expires = _time(row["issued_at"]), _time(row["expires_at"])
    if issued is None or expires is None:
        raise ValueError(f"token {row['jti']!r} has no issued_at or expires_at")
    seq = _pick(row, "record_seq")
    workload = _pick(row, "workload_hash", "workload")
    return IssuedToken(
        jti=str(row["jti"]),
        agent_id=str(row["agent_id"]),
        token_type=str(_pick(row, "type", "token_type")),
        audience=str(row["audience"]),
        issued_at=issued,
        expires_at=expires,
        token=token.decode() if isinstance(token, bytes) else str(token),
        record_seq=int(seq) if seq is not None else None,
        workload=workload.hex() if isinstance(workload, bytes) else workload,
        revoked_at=_time(_pick(row, "revoked_at")),
    )
