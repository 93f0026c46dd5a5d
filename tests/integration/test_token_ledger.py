"""``TokenLedger.store_many`` (driver SQL on the hot path) on SQLite and PostgreSQL: a token is
kept only while the agent row says attested, since before its round, that round still the
newest passed one, and the lease running; what is kept reads back as it was written."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from geoattest.db import make_engine, migrate
from verifier.storage.models import PolicyRecord, VerifiedAgent
from verifier.storage.tokens import TokenDraft, TokenLedger

ENDED = dt.datetime(2026, 12, 2, 4, 0, 0, 123456, tzinfo=dt.UTC)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    migrate(engine)
    with Session(engine) as session, session.begin():
        session.add(PolicyRecord(name="p", version=1, document="{}", updated_at=ENDED))
        session.flush()
        for agent_id in ("a1", "a2"):
            session.add(
                VerifiedAgent(
                    agent_id=agent_id, policy_name="p", ak_public=b"", agent_url="",
                    tls_certificate=b"", state="attested", state_since=ENDED,
                    added_at=ENDED, last_passed_at=ENDED,
                )
            )  # fmt: skip
    yield engine
    engine.dispose()


def _draft(agent_id: str, ended: dt.datetime = ENDED) -> TokenDraft:
    return TokenDraft(
        jti=secrets.token_urlsafe(16),
        agent_id=agent_id,
        type="por",
        audience="svc",
        workload_sha256=bytes(range(32)),
        issued_at=ENDED + dt.timedelta(seconds=1),
        expires_at=ENDED + dt.timedelta(seconds=301),
        record_seq=4,
        record_ended_at=ended,
        max_age=dt.timedelta(seconds=30),
        token="h.p.s",  # noqa: S106  # not a secret
    )


def test_kept_tokens_read_back_and_each_refusal_has_its_cause(engine: Engine) -> None:
    ledger = TokenLedger(engine, clock=lambda: (ENDED + dt.timedelta(seconds=2)).timestamp())
    try:
        older = _draft("a1", ENDED - dt.timedelta(seconds=2))  # a newer round passed since
        good, other, unknown = _draft("a1"), _draft("a2"), _draft("nobody")
        with Session(engine) as session, session.begin():
            session.execute(
                update(VerifiedAgent).where(VerifiedAgent.agent_id == "a2").values(state="failed")
            )
        assert ledger.store_many([good, older, other, unknown]) == [True, False, False, False]
        stored = ledger.get(good.jti)
        assert stored is not None
        assert (stored.issued_at, stored.expires_at) == (good.issued_at, good.expires_at)
        assert stored.workload_sha256 == good.workload_sha256
        assert stored.record_seq == 4
        assert all(ledger.get(d.jti) is None for d in (older, other, unknown))
        assert [t.jti for t in ledger.issued(since=good.issued_at)] == [good.jti]
    finally:
        ledger.close()


def test_no_token_past_the_lease(engine: Engine) -> None:
    late = (ENDED + dt.timedelta(seconds=31)).timestamp()  # last passed + 30 s lease < now
    ledger = TokenLedger(engine, clock=lambda: late)
    try:
        assert ledger.store_many([_draft("a1")]) == [False]
    finally:
        ledger.close()
