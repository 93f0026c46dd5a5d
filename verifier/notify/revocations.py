"""Telling the world an agent failed: revocation events on Redis, and a webhook delivery per URL.

On every transition to ``failed`` the verifier publishes a revocation message on the Redis channel
``geoattest:revocations`` (token services and dashboards subscribe), and creates one delivery per
configured webhook (sent by ``verifier.notify.webhooks``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from geoattest.db import transaction
from verifier.storage.hot_state import HotState
from verifier.storage.models import WebhookDelivery
from verifier.storage.sql import Transition


class FailureNotifier:
    """Called by the round runner on each transition to ``failed``."""

    def __init__(
        self,
        *,
        hot: HotState,
        sessions: sessionmaker[Session],
        webhook_urls: Sequence[str],
        enqueue_delivery: Callable[[int], None],
    ) -> None:
        self._hot = hot
        self._sessions = sessions
        self._urls = tuple(webhook_urls)
        self._enqueue = enqueue_delivery

    def __call__(self, event_id: int, transition: Transition) -> None:
        message = {
            "type": "agent_failed",
            "event_id": event_id,
            "agent_id": transition.agent_id,
            "reason": transition.reason,
            "message": transition.message,
            "details": dict(transition.details),
        }
        self._hot.publish_revocation(json.dumps(message))
        if not self._urls:
            return
        now = datetime.now(UTC)
        with transaction(self._sessions) as session:
            deliveries = [
                WebhookDelivery(
                    event_id=event_id, url=url, status="pending", attempts=0, updated_at=now
                )
                for url in self._urls
            ]
            session.add_all(deliveries)
            session.flush()
            ids = [delivery.id for delivery in deliveries]
        for delivery_id in ids:
            self._enqueue(delivery_id)
