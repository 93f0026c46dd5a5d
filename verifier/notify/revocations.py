"""Telling the world an agent's state changed: Redis channels and the webhook outbox.

Every committed transition is published on ``geoattest:events`` (dashboards); a transition that
ends the agent's trust (a failure, or leaving ``attested``) also on ``geoattest:revocations``
(token services drop what they issued). Both carry ``AgentEvent.to_json()``, the same body as the
webhook and the events API. Webhook deliveries were written with the verdict (an outbox); they
are enqueued here, after the commit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from verifier.storage.hot_state import HotState
from verifier.storage.verdicts import Committed

log = logging.getLogger(__name__)


class EventPublisher:
    """Called by the round runner (and operator actions, the watchdog) after each commit."""

    def __init__(self, *, hot: HotState, enqueue_delivery: Callable[[int], None]) -> None:
        self._hot = hot
        self._enqueue = enqueue_delivery

    def __call__(self, committed: Committed) -> None:
        event = committed.event
        if event is None:
            return
        message = json.dumps(event.to_json(), separators=(",", ":"))
        try:
            self._hot.publish_event(message, ends_trust=event.ends_trust)
        except Exception:  # subscribers re-read state; the commit is what counts
            log.exception("could not publish event %d", event.id)
        for delivery_id in committed.deliveries:
            try:
                self._enqueue(delivery_id)
            except Exception:  # the broker is down: the verdict stands, the others still go
                log.exception("could not enqueue webhook delivery %d (left pending)", delivery_id)
