"""The one event model: what the revocation channel, the webhook body and the events API carry.

An ``AgentEvent`` is a state transition of one agent with its reason and the evidence record
behind it (``round_id``, ``record_seq``), or a *notice*: something a passed round found worth
telling although the state did not move (``from_state`` = ``to_state``, a ``NOTICE_REASONS``
reason: a GNSS receiver other than the enrolled one, under a policy that only records it).
``to_json`` is the single JSON body every consumer gets: the Redis revocation channel, the
signed webhook and ``GET /v1/agents/<id>/events``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from verifier.core.reasons import Reason
from verifier.core.states import AgentState


class EventType(StrEnum):
    AGENT_FAILED = "agent_failed"  # an integrity failure: revoke
    TRUST_ENDED = "agent_trust_ended"  # left ``attested`` without a failure (stale, paused, …)
    STATE_CHANGED = "agent_state_changed"
    NOTICE = "agent_notice"  # no transition: e.g. the GNSS receiver changed (policy ``record``)


NOTICE_REASONS = frozenset({Reason.GNSS_RECEIVER_CHANGED})


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentEvent:
    id: int
    agent_id: str
    at: dt.datetime
    from_state: AgentState
    to_state: AgentState
    reason: Reason | None
    message: str | None = None
    details: Mapping[str, str] = field(default_factory=dict)
    round_id: str | None = None
    record_seq: int | None = None

    @property
    def type(self) -> EventType:
        if self.from_state is self.to_state and self.reason in NOTICE_REASONS:
            return EventType.NOTICE
        if self.to_state is AgentState.FAILED:
            return EventType.AGENT_FAILED
        if self.from_state is AgentState.ATTESTED:
            return EventType.TRUST_ENDED
        return EventType.STATE_CHANGED

    @property
    def ends_trust(self) -> bool:
        """Token services drop what they issued for the agent on such an event."""
        return self.type in (EventType.AGENT_FAILED, EventType.TRUST_ENDED)

    def to_json(self) -> dict[str, object]:
        return {
            "type": self.type.value,
            "id": self.id,
            "agent_id": self.agent_id,
            "at": self.at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
            "from_state": self.from_state.value,
            "to_state": self.to_state.value,
            "reason": self.reason.value if self.reason is not None else None,
            "message": self.message,
            "details": dict(self.details),
            "round_id": self.round_id,
            "record_seq": self.record_seq,
        }
