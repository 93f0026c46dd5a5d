"""The events a committed verdict writes: a transition's event (with the revocation of the
agent's tokens when it ends trust, and the webhook deliveries of a failure, in the verdict's
transaction), or a notice's."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

from sqlalchemy import Connection, insert

from verifier.core.events import AgentEvent
from verifier.core.record_types import EvidenceRecord
from verifier.core.round_types import Notice
from verifier.core.states import AgentState
from verifier.storage.models import EventRecord, WebhookDelivery
from verifier.storage.tokens import revoke_unexpired


def notice_event(connection: Connection, record: EvidenceRecord, notice: Notice) -> AgentEvent:
    """A notice event: the record's state on both sides, the notice's reason and words."""
    noted = replace(record, reason=notice.reason, message=notice.message, details=notice.details)
    event_id = _insert_event(connection, noted)
    return _agent_event(event_id, noted)


def _insert_event(connection: Connection, record: EvidenceRecord) -> int:
    return int(
        connection.execute(
            insert(EventRecord)
            .values(
                agent_id=record.agent_id,
                at=record.ended_at,
                from_state=record.from_state.value,
                to_state=record.to_state.value,
                reason=record.reason.value if record.reason else None,
                message=record.message or None,
                details=json.dumps(dict(record.details)) if record.details else None,
                round_id=record.round_id,
                record_seq=record.seq,
            )
            .returning(EventRecord.id)
        ).scalar_one()
    )


def transition_event(
    connection: Connection, record: EvidenceRecord, webhook_urls: Sequence[str]
) -> tuple[AgentEvent, tuple[int, ...]]:
    """A transition's event, with its revocations and webhook deliveries (the outbox)."""
    event = _agent_event(_insert_event(connection, record), record)
    if event.ends_trust:  # tokens out for this agent are revoked with the verdict
        revoke_unexpired(connection, record.agent_id, record.ended_at)
    deliveries: tuple[int, ...] = ()
    if record.to_state is AgentState.FAILED and webhook_urls:
        deliveries = tuple(
            connection.execute(
                insert(WebhookDelivery)
                .values(
                    event_id=event.id,
                    url=url,
                    status="pending",
                    attempts=0,
                    updated_at=record.ended_at,
                )
                .returning(WebhookDelivery.id)
            ).scalar_one()
            for url in webhook_urls
        )
    return event, deliveries


def _agent_event(event_id: int, record: EvidenceRecord) -> AgentEvent:
    return AgentEvent(
        id=event_id,
        agent_id=record.agent_id,
        at=record.ended_at,
        from_state=record.from_state,
        to_state=record.to_state,
        reason=record.reason,
        message=record.message or None,
        details=record.details,
        round_id=record.round_id,
        record_seq=record.seq,
    )
