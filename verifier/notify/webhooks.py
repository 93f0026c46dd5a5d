"""Signed webhooks: one delivery per configured URL for each integrity failure, retried.

Deliveries run as Celery tasks with retries and backoff; every attempt is recorded in
``verifier_webhook_deliveries``.

Webhook requests are ``POST`` with a JSON body and the headers ``X-Geoattest-Timestamp`` (Unix
seconds) and ``X-Geoattest-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>``.
Every delivery is signed: settings refuse webhook URLs without a secret, and a sender without one
gives up rather than post unsigned. Receivers check both with ``verify_signature`` (or the
stdlib-only receiver in docs/webhooks.md): a bad signature, or a timestamp more than
``MAX_SKEW_SECONDS`` away from their clock (a replay), is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime, timedelta

import requests
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from geoattest.db import transaction
from geoattest.errors import ReachabilityError
from verifier.metrics import WEBHOOK_DELIVERIES
from verifier.storage.models import EventRecord, WebhookDelivery
from verifier.storage.sql import event_of

log = logging.getLogger(__name__)

MAX_DELIVERY_ATTEMPTS = 8
# A delivery written with its verdict (the outbox) is enqueued right after the commit; one still
# unattempted this long after is taken as never enqueued (the broker was down) and sent again.
UNSENT_AFTER = timedelta(seconds=60)
MAX_SKEW_SECONDS = 300
SIGNATURE_HEADER = "X-Geoattest-Signature"
TIMESTAMP_HEADER = "X-Geoattest-Timestamp"


class WebhookDeliveryFailed(ReachabilityError):
    code = "webhook_delivery_failed"


def sign_payload(secret: bytes, timestamp: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256(secret, timestamp ‖ "." ‖ body)>``: the body and its time."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: bytes,
    timestamp: str,
    signature: str,
    body: bytes,
    *,
    now: datetime,
    max_skew_seconds: int = MAX_SKEW_SECONDS,
) -> bool:
    """True when ``signature`` is ``sign_payload(secret, timestamp, body)`` (compared in constant
    time) and ``timestamp`` is decimal Unix seconds within ``max_skew_seconds`` of ``now``."""
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return False
    if abs(now.timestamp() - int(timestamp)) > max_skew_seconds:
        return False
    return hmac.compare_digest(sign_payload(secret, timestamp, body), signature)


class WebhookSender:
    """Performs one delivery attempt and records it; raises ``WebhookDeliveryFailed`` to retry."""

    def __init__(
        self, sessions: sessionmaker[Session], secret: bytes | None, *, timeout: float = 5.0
    ) -> None:
        self._sessions = sessions
        self._secret = secret
        self._timeout = timeout

    def claim_unsent(self, now: datetime, *, limit: int = 100) -> list[int]:
        """Deliveries never attempted ``UNSENT_AFTER`` after they were written (their enqueue
        after the commit failed), each claimed by moving its ``updated_at`` to ``now``, so that
        of several boxes sweeping at once one sends it. At least once: a delivery still waiting
        in a queue that long may be sent twice; the body carries the event id."""
        cutoff = now - UNSENT_AFTER
        unsent = (
            WebhookDelivery.status == "pending",
            WebhookDelivery.attempts == 0,
            WebhookDelivery.updated_at < cutoff,
        )
        oldest = select(WebhookDelivery.id).where(*unsent).order_by(WebhookDelivery.id)
        # One statement: a sweeper that updates a row after another did finds the condition
        # false on the new row (PostgreSQL re-checks it; SQLite has one writer at a time).
        with transaction(self._sessions) as session:
            claimed = session.scalars(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(oldest.limit(limit).scalar_subquery()), *unsent)
                .values(updated_at=now)
                .returning(WebhookDelivery.id)
                .execution_options(synchronize_session=False)
            ).all()
        return sorted(claimed)

    def deliver(self, delivery_id: int) -> None:
        with transaction(self._sessions) as session:
            delivery = session.get(WebhookDelivery, delivery_id)
            if delivery is None or delivery.status != "pending":
                return
            event = session.get(EventRecord, delivery.event_id)
            if event is None:
                return
            url, body = delivery.url, _payload(event)
        error = self._post(url, body)
        with transaction(self._sessions) as session:
            delivery = session.get(WebhookDelivery, delivery_id)
            if delivery is None:
                return
            delivery.attempts += 1
            delivery.updated_at = datetime.now(UTC)
            delivery.last_error = error
            if error is None:
                delivery.status = "delivered"
            elif delivery.attempts >= MAX_DELIVERY_ATTEMPTS:
                delivery.status = "gave_up"
            attempts, status = delivery.attempts, delivery.status
        WEBHOOK_DELIVERIES.labels(
            "delivered" if error is None else "retrying" if status == "pending" else "gave_up"
        ).inc()
        if error is None:
            log.info("webhook delivered to %s (attempt %d)", url, attempts)
        elif status == "pending":
            raise WebhookDeliveryFailed(f"webhook {url} attempt {attempts}: {error}")
        else:
            log.error("webhook %s: giving up after %d attempts: %s", url, attempts, error)

    def _post(self, url: str, body: bytes) -> str | None:
        if self._secret is None:  # settings refuse this; never post an unsigned webhook anyway
            return "no webhook_secret configured: an unsigned webhook is never sent"
        timestamp = str(int(datetime.now(UTC).timestamp()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign_payload(self._secret, timestamp, body),
        }
        try:
            response = requests.post(url, data=body, headers=headers, timeout=self._timeout)
        except requests.RequestException as e:
            return f"{type(e).__name__}: {e}"
        return None if response.ok else f"HTTP {response.status_code}"


def _payload(event: EventRecord) -> bytes:
    """The webhook body: the event model's JSON (``AgentEvent.to_json``), as everywhere else."""
    return json.dumps(event_of(event).to_json(), separators=(",", ":")).encode()
