"""The webhook outbox is swept: a delivery written with its verdict but never attempted (its
enqueue after the commit failed: the broker was down) is claimed again once ``UNSENT_AFTER``
has passed, by one sweeper only, and not before (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from geoattest.db import make_engine, session_factory
from tests.support.runner_stack import RunnerStack, runner_stack
from verifier.core.states import AgentState
from verifier.notify.webhooks import UNSENT_AFTER, WebhookSender


@pytest.fixture
def stack(tmp_path: Path, redis_url: str, database_url: str) -> Iterator[RunnerStack]:
    with runner_stack(tmp_path, redis_url, database_url=database_url) as running:
        yield running


def test_a_delivery_never_enqueued_is_claimed_once_after_its_grace(stack: RunnerStack) -> None:
    agent_id = next(iter(stack.sims))
    assert stack.round(agent_id) is not None
    stack.sims[agent_id].measure("/tmp/evil", content=b"payload")
    report = stack.round(agent_id)
    assert report is not None
    assert report.committed is not None
    assert report.committed.record.to_state is AgentState.FAILED
    (delivery_id,) = report.committed.deliveries  # written; the stack enqueues nothing
    engine = make_engine(stack.database_url)
    try:
        sweepers = [WebhookSender(session_factory(engine), b"s" * 32) for _ in range(2)]
        written = report.committed.record.ended_at
        assert sweepers[0].claim_unsent(written + UNSENT_AFTER / 2) == []  # still in its grace
        later = written + UNSENT_AFTER + dt.timedelta(seconds=1)
        assert sweepers[0].claim_unsent(later) == [delivery_id]
        assert sweepers[1].claim_unsent(later) == []  # the other box finds it claimed
        # Claimed again only if it is still unattempted a whole grace after the claim.
        assert sweepers[1].claim_unsent(later + UNSENT_AFTER + dt.timedelta(seconds=1)) == [
            delivery_id
        ]
    finally:
        engine.dispose()
