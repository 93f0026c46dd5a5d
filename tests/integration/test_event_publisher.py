"""After a verdict committed, telling the world about it never undoes it: a webhook delivery
that cannot be enqueued (the broker is down) is logged and left pending in the outbox, the
other deliveries are still enqueued, and the event still reaches the Redis channels."""

from __future__ import annotations

import datetime as dt
import logging
import time

import pytest
import redis

from verifier.core.events import AgentEvent
from verifier.core.reasons import Reason
from verifier.core.record_types import RecordKind
from verifier.core.round_record import RecordOrigin, action_record
from verifier.core.states import AgentState
from verifier.notify.revocations import EventPublisher
from verifier.storage.hot_state import EVENTS_CHANNEL, HotState
from verifier.storage.verdicts import Committed


def _failure(delivery_ids: tuple[int, ...]) -> Committed:
    at = dt.datetime(2026, 12, 4, tzinfo=dt.UTC)
    record = action_record(
        agent_id="edge-1",
        round_id="round-1",
        at=at,
        kind=RecordKind.OPERATOR,
        origin=RecordOrigin(verifier_id="test"),
        reason=Reason.QUOTE_SIGNATURE_INVALID,
    )
    event = AgentEvent(
        id=7,
        agent_id="edge-1",
        at=at,
        from_state=AgentState.ATTESTED,
        to_state=AgentState.FAILED,
        reason=Reason.QUOTE_SIGNATURE_INVALID,
    )
    return Committed(record=record, digest=b"", kept=True, event=event, deliveries=delivery_ids)


def test_a_delivery_that_cannot_be_enqueued_leaves_the_others_and_the_event(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis.Redis.from_url(redis_url)
    subscriber = client.pubsub(ignore_subscribe_messages=True)
    subscriber.subscribe(EVENTS_CHANNEL)
    enqueued: list[int] = []

    def enqueue(delivery_id: int) -> None:
        if delivery_id == 1:
            raise ConnectionError("the broker is down")
        enqueued.append(delivery_id)

    publish = EventPublisher(hot=HotState(client), enqueue_delivery=enqueue)
    try:
        with caplog.at_level(logging.ERROR, logger="verifier.notify.revocations"):
            publish(_failure((1, 2)))
        assert enqueued == [2]
        assert "could not enqueue webhook delivery 1" in caplog.text
        deadline = time.monotonic() + 5
        message = None
        while message is None and time.monotonic() < deadline:
            message = subscriber.get_message(timeout=0.1)
        assert message is not None, "the event never reached the channel"
        assert b'"agent_id":"edge-1"' in message["data"]
    finally:
        subscriber.close()
        client.close()
