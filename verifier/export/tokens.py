"""Where the export finds the tokens issued in a window: the ``TokenSource`` seam, read from the
token service's ``verifier_tokens`` (``verifier.storage.tokens``)."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from sqlalchemy import Engine, select

from geoattest.db import as_utc
from verifier.export.layout import IssuedToken
from verifier.storage.models import TokenRow


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

    def tokens(self, agent_id: str, start: dt.datetime, end: dt.datetime) -> list[IssuedToken]:
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(TokenRow)
                .where(
                    TokenRow.agent_id == agent_id,
                    TokenRow.issued_at >= start,
                    TokenRow.issued_at <= end,
                )
                .order_by(TokenRow.issued_at, TokenRow.jti)
            ).all()
        return [
            IssuedToken(
                jti=row.jti,
                agent_id=row.agent_id,
                token_type=row.type,
                audience=row.audience,
                issued_at=as_utc(row.issued_at),
                expires_at=as_utc(row.expires_at),
                token=row.token,
                record_seq=row.record_seq,
                workload=bytes(row.workload_sha256).hex(),
                revoked_at=as_utc(row.revoked_at) if row.revoked_at else None,
            )
            for row in rows
        ]
