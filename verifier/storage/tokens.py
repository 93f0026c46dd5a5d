"""Issued tokens at rest (``verifier_tokens``): stored before they are handed out, revoked with
the verdict that ends the agent's trust, listed for the status document and for exports.

**No token outlives the trust it was issued on.** A token is inserted, and only kept, if in the
same transaction the agent row still says ``attested``, has said so since before the round the
token's claims come from (``state_since`` ≤ that record's end), that round is still the agent's
newest passed one (``last_passed_at`` is its end, not later: a token never names a round a newer
one has superseded, e.g. another zone), and its lease runs at least until now. The insert comes
first: on SQLite it takes the database's write lock, so nothing commits between the check and
the commit; on PostgreSQL the agent row is read ``FOR SHARE``, so a verdict
that moves the agent waits for this transaction (and then revokes the token with the others) or
is seen by it (and the token is dropped). Every verdict that ends trust revokes the agent's
unexpired tokens in its own transaction (``verifier.storage.verdicts``). A kept token's entry is
queued for the transparency log in the transaction that keeps it.

Inserts from concurrent requests share transactions: ``store`` hands the draft to the process's
``GroupCommitter`` (the one batching writer verdicts use too), so a burst of issuance costs one
commit per batch, and a request waits for nobody when the API is idle.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, DateTime, Engine, and_, delete, select, update
from sqlalchemy.orm import Session

from geoattest.db import as_utc
from verifier.core.log_entry import TokenEntry
from verifier.core.states import AgentState
from verifier.storage.group_commit import GroupCommitter
from verifier.storage.log_queue import enqueue
from verifier.storage.models import TokenRow

log = logging.getLogger(__name__)

MAX_PAGE = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenDraft:
    jti: str
    agent_id: str
    type: str
    audience: str
    workload_sha256: bytes
    issued_at: dt.datetime
    expires_at: dt.datetime
    record_seq: int
    record_ended_at: dt.datetime  # the end of the round the claims come from
    max_age: dt.timedelta  # the agent's lease length (its policy's, or the default)
    token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredToken:
    jti: str
    agent_id: str
    type: str
    audience: str
    workload_sha256: bytes
    issued_at: dt.datetime
    expires_at: dt.datetime
    record_seq: int
    token: str
    revoked_at: dt.datetime | None


def revoke_unexpired(connection: Connection, agent_id: str, at: dt.datetime) -> int:
    """Mark every token of ``agent_id`` still valid at ``at`` revoked (inside the caller's
    transaction); returns how many."""
    result = connection.execute(
        update(TokenRow)
        .where(
            TokenRow.agent_id == agent_id,
            TokenRow.revoked_at.is_(None),
            TokenRow.expires_at > at,
        )
        .values(revoked_at=at)
    )
    return int(result.rowcount)


class TokenLedger:
    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock
        self._writer: GroupCommitter[TokenDraft, bool] = GroupCommitter(
            _Batch(self), name="token-writer"
        )

    # --- writing ------------------------------------------------------------------------------

    def store(self, draft: TokenDraft, *, timeout: float = 10.0) -> bool:
        """Store ``draft`` (batched with concurrent ones); False when the agent's trust ended
        meanwhile (nothing stored). Raises the database's error, or ``TimeoutError`` (then the
        caller must not hand the token out: it may be stored late, never issued)."""
        return self._writer.commit(draft, timeout=timeout)

    def store_many(self, drafts: Sequence[TokenDraft]) -> list[bool]:
        """One transaction for ``drafts`` (see the module docstring); which were kept."""
        if not drafts:
            return []
        with self._engine.begin() as connection:
            _insert_tokens(connection, drafts)
            agents = _agent_rows(connection, sorted({d.agent_id for d in drafts}))
            now = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
            kept = [_still_trusted(d, agents.get(d.agent_id), now) for d in drafts]
            refused = [d.jti for d, ok in zip(drafts, kept, strict=True) if not ok]
            if refused:
                connection.execute(delete(TokenRow).where(TokenRow.jti.in_(refused)))
                log.info("%d token(s) not issued: the agent's trust ended meanwhile", len(refused))
            # Logged with the commit that issues them: a token an export shows is in the log.
            issued = [_log_entry(d) for d, ok in zip(drafts, kept, strict=True) if ok]
            enqueue(connection, issued, now)
            return kept

    def revoke_agent(self, agent_id: str, at: dt.datetime) -> int:
        with self._engine.begin() as connection:
            return revoke_unexpired(connection, agent_id, at)

    def close(self) -> None:
        self._writer.close()

    # --- reading ------------------------------------------------------------------------------

    def revoked(self, now: dt.datetime) -> list[tuple[str, dt.datetime]]:
        """(jti, expires_at) of every revoked token that has not expired yet, oldest first."""
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(TokenRow.jti, TokenRow.expires_at)
                .where(TokenRow.revoked_at.is_not(None), TokenRow.expires_at > now)
                .order_by(TokenRow.expires_at, TokenRow.jti)
            )
            return [(jti, as_utc(expires)) for jti, expires in rows]

    def issued(
        self,
        *,
        agent_id: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = MAX_PAGE,
    ) -> list[StoredToken]:
        """Tokens issued in ``[since, until]`` (of one agent, or all), in issuance order: what a
        residency-proof export includes for a window."""
        query = select(TokenRow)
        conditions = []
        if agent_id is not None:
            conditions.append(TokenRow.agent_id == agent_id)
        if since is not None:
            conditions.append(TokenRow.issued_at >= since)
        if until is not None:
            conditions.append(TokenRow.issued_at <= until)
        if conditions:
            query = query.where(and_(*conditions))
        query = query.order_by(TokenRow.issued_at, TokenRow.jti).limit(limit)
        with Session(self._engine) as session:
            return [_stored(row) for row in session.scalars(query)]

    def get(self, jti: str) -> StoredToken | None:
        with Session(self._engine) as session:
            row = session.get(TokenRow, jti)
            return _stored(row) if row is not None else None


class _Batch:
    """``TokenLedger.store_many`` as the group committer's store."""

    def __init__(self, ledger: TokenLedger) -> None:
        self._ledger = ledger

    def commit(self, drafts: Sequence[TokenDraft]) -> list[bool]:
        return self._ledger.store_many(drafts)


@dataclass(frozen=True, slots=True)
class _AgentRow:  # the columns ``store_many`` reads
    agent_id: str
    state: str
    state_since: dt.datetime
    last_passed_at: dt.datetime | None


# Issuance commits a batch every few milliseconds under load: as driver SQL, the insert and the
# agent read skip SQLAlchemy's per-statement compilation and parameter processing (together
# most of the writer thread's time, docs/benchmarks.md Tokens). Same columns as ``TokenRow``.
_INSERT_SQL = (
    "INSERT INTO verifier_tokens (jti, agent_id, type, audience, workload_sha256, issued_at, "
    "expires_at, record_seq, token, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)"
)
_AGENTS_SQL = (
    "SELECT agent_id, state, state_since, last_passed_at FROM verifier_agents "
    "WHERE agent_id IN ({marks})"
)
_TIME = DateTime(timezone=True)


def _driver(connection: Connection, sql: str) -> str:
    return sql if connection.dialect.paramstyle == "qmark" else sql.replace("?", "%s")


def _insert_tokens(connection: Connection, drafts: Sequence[TokenDraft]) -> None:
    dialect = connection.dialect
    processor = _TIME.dialect_impl(dialect).bind_processor(dialect)  # SQLite: its text format

    def to_db(value: dt.datetime) -> object:
        return processor(value) if processor is not None else value

    rows = [
        (d.jti, d.agent_id, d.type, d.audience, d.workload_sha256, to_db(d.issued_at),
         to_db(d.expires_at), d.record_seq, d.token)
        for d in drafts
    ]  # fmt: skip
    connection.exec_driver_sql(_driver(connection, _INSERT_SQL), rows)


def _agent_rows(connection: Connection, ids: Sequence[str]) -> dict[str, _AgentRow]:
    """The agents' rows, read ``FOR SHARE`` on PostgreSQL (SQLite: the insert before this took
    the database's write lock already)."""
    sql = _AGENTS_SQL.format(marks=", ".join("?" for _ in ids))
    dialect = connection.dialect
    if dialect.name == "postgresql":
        sql += " FOR SHARE"
    processor = _TIME.dialect_impl(dialect).result_processor(dialect, None)

    def from_db(value: object) -> dt.datetime | None:
        if value is None:
            return None
        moment = processor(value) if processor is not None else value
        assert isinstance(moment, dt.datetime)  # noqa: S101  # a DateTime column
        return as_utc(moment)

    found = {}
    for agent_id, state, since, passed in connection.exec_driver_sql(
        _driver(connection, sql), tuple(ids)
    ):
        state_since = from_db(since)
        assert state_since is not None  # noqa: S101  # NOT NULL
        found[agent_id] = _AgentRow(agent_id, state, state_since, from_db(passed))
    return found


def _still_trusted(draft: TokenDraft, row: _AgentRow | None, now: dt.datetime) -> bool:
    if row is None or row.state != AgentState.ATTESTED.value or row.last_passed_at is None:
        return False
    if as_utc(row.state_since) > draft.record_ended_at:
        return False  # trust ended and began again after the round the claims come from
    if as_utc(row.last_passed_at) > draft.record_ended_at:
        return False  # a newer round passed: the claims are not of the newest passed round
    return as_utc(row.last_passed_at) + draft.max_age >= now


def _log_entry(draft: TokenDraft) -> TokenEntry:
    return TokenEntry(
        agent_id=draft.agent_id,
        jti=draft.jti,
        token_type=draft.type,
        audience=draft.audience,
        issued_at=draft.issued_at,
        expires_at=draft.expires_at,
        token_sha256=hashlib.sha256(draft.token.encode("ascii")).digest(),
        record_seq=draft.record_seq,
        workload=draft.workload_sha256.hex(),
    )


def _stored(row: TokenRow) -> StoredToken:
    return StoredToken(
        jti=row.jti,
        agent_id=row.agent_id,
        type=row.type,
        audience=row.audience,
        workload_sha256=bytes(row.workload_sha256),
        issued_at=as_utc(row.issued_at),
        expires_at=as_utc(row.expires_at),
        record_seq=row.record_seq,
        token=row.token,
        revoked_at=as_utc(row.revoked_at) if row.revoked_at else None,
    )
