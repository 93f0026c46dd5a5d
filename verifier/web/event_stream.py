"""Server-sent events: the fleet's state changes, relayed from the Redis events channel.

Every committed transition is published on ``geoattest:events`` (``AgentEvent.to_json``, the same
body as the events API and the webhook); a stream relays them as they come, so a state change is
on an operator's screen within a round trip. A stream resumes where it broke off: with
``Last-Event-ID`` (or ``after_id``) it first replays what the database holds after that id, then
relays live events it has not sent yet. It says ``ready`` once subscribed (nothing published
after that is missed), sends a comment every ``heartbeat`` seconds (a dead client is noticed at
the next write) and ends after ``lifetime`` seconds, so that no server thread is held for good;
clients reconnect (``retry``) and resume.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import redis

from verifier.storage.fleet_reads import MAX_EVENTS, FleetReads
from verifier.storage.hot_state import EVENTS_CHANNEL

log = logging.getLogger(__name__)

RETRY_MS = 1000
HEARTBEAT_SECONDS = 10.0
LIFETIME_SECONDS = 300.0


def _frame(event_id: int, data: str) -> str:
    return f"id: {event_id}\nevent: agent_event\ndata: {data}\n\n"


def _live_event(raw: object) -> tuple[int, str, str] | None:
    """(id, agent id, JSON text) of a published event, or None for anything else on the channel."""
    if not isinstance(raw, bytes | str):
        return None
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(body, dict):
        return None
    event_id, agent_id = body.get("id"), body.get("agent_id")
    if type(event_id) is not int or not isinstance(agent_id, str):
        return None
    return event_id, agent_id, json.dumps(body, separators=(",", ":"))


def event_stream(
    client: redis.Redis,
    reads: FleetReads,
    *,
    agent_id: str | None,
    after_id: int,
    lifetime: float = LIFETIME_SECONDS,
    heartbeat: float = HEARTBEAT_SECONDS,
) -> Iterator[str]:
    """The text/event-stream body (see the module docstring); ends on a Redis fault too (the
    client reconnects and resumes from its last id)."""
    pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call, unused-ignore]  # redis-py < 8 leaves it unannotated
    try:
        pubsub.subscribe(EVENTS_CHANNEL)
        yield f"retry: {RETRY_MS}\nevent: ready\ndata: {{}}\n\n"
        last = after_id
        if after_id > 0:
            for event in reads.events(agent_id=agent_id, after_id=after_id, limit=MAX_EVENTS):
                yield _frame(event.id, json.dumps(event.to_json(), separators=(",", ":")))
                last = event.id
        start = time.monotonic()
        beat = start + heartbeat
        while time.monotonic() - start < lifetime:
            message = pubsub.get_message(timeout=min(1.0, heartbeat))
            if time.monotonic() >= beat:
                yield ": keepalive\n\n"
                beat = time.monotonic() + heartbeat
            if message is None:
                continue
            live = _live_event(message.get("data"))
            if live is None or live[0] <= last or (agent_id and live[1] != agent_id):
                continue
            last = live[0]
            yield _frame(live[0], live[2])
    except redis.RedisError:
        log.warning("event stream ended: Redis fault", exc_info=True)
    finally:
        pubsub.close()
