"""A verdict's transaction is bounded on PostgreSQL as SQLite's busy timeout bounds it there: a
row lock held elsewhere fails the commit at the store's statement timeout (the rounds of that
group are then marked ``record_failed``), and nothing of it is stored. Without the bound the
group committer's writer, and every later verdict of the process, would wait for as long as the
lock is held (ADR 23)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.exc import OperationalError

from geoattest.db import make_engine
from tests.support.postgres_server import PostgresServer
from tests.support.runner_stack import runner_stack
from verifier.core.reasons import Reason
from verifier.core.record_types import RecordKind
from verifier.core.round_record import RecordOrigin, action_record
from verifier.storage.verdicts import VerdictDraft, VerdictStore

HELD_SECONDS = 6.0  # how long the other transaction keeps the agent's row locked
TIMEOUT_SECONDS = 0.5


@pytest.mark.postgresql
def test_a_verdict_blocked_by_a_row_lock_fails_at_the_statement_timeout(
    tmp_path: Path, redis_url: str, postgres_server: PostgresServer
) -> None:
    with (
        postgres_server.database() as url,
        runner_stack(tmp_path, redis_url, database_url=url) as stack,
    ):
        agent_id = next(iter(stack.sims))
        assert stack.round(agent_id) is not None
        records = stack.store.get_agent(agent_id).records
        engine = make_engine(url)
        holder = engine.connect()
        try:
            held = holder.begin()
            holder.exec_driver_sql(
                "SELECT 1 FROM verifier_agents WHERE agent_id = %(id)s FOR UPDATE",
                {"id": agent_id},
            )
            releaser = threading.Timer(HELD_SECONDS, held.rollback)
            releaser.start()
            draft = VerdictDraft(
                record=action_record(
                    agent_id=agent_id,
                    round_id="blocked",
                    at=dt.datetime.now(dt.UTC),
                    kind=RecordKind.OPERATOR,
                    origin=RecordOrigin(verifier_id="test"),
                    reason=Reason.LEASE_EXPIRED,
                ),
                fence=10**9,
                decide=lambda state: state,
            )
            store = VerdictStore(engine, statement_timeout=TIMEOUT_SECONDS)
            started = time.monotonic()
            # The steady update runs on the driver's cursor: psycopg's own error, unwrapped.
            with pytest.raises((OperationalError, psycopg.OperationalError), match="timeout"):
                store.commit([draft])
            waited = time.monotonic() - started
            releaser.join(HELD_SECONDS + 5)
        finally:
            holder.close()
            engine.dispose()
        assert waited < HELD_SECONDS / 2, f"the commit waited {waited:.1f} s for the lock"
        assert stack.store.get_agent(agent_id).records == records
