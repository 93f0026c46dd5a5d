"""The one event model: a notice (no transition) is told, and never ends trust."""

from __future__ import annotations

import datetime as dt

from verifier.core.events import AgentEvent, EventType
from verifier.core.reasons import Reason
from verifier.core.states import AgentState

AT = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)


def _event(from_state: AgentState, to_state: AgentState, reason: Reason | None) -> AgentEvent:
    return AgentEvent(
        id=1, agent_id="edge", at=AT, from_state=from_state, to_state=to_state, reason=reason
    )


def test_a_changed_receiver_under_record_is_a_notice_that_keeps_tokens() -> None:
    notice = _event(AgentState.ATTESTED, AgentState.ATTESTED, Reason.GNSS_RECEIVER_CHANGED)
    assert notice.type is EventType.NOTICE
    assert not notice.ends_trust
    assert notice.to_json()["type"] == "agent_notice"


def test_transitions_keep_their_types() -> None:
    failed = _event(AgentState.ATTESTED, AgentState.FAILED, Reason.GNSS_RECEIVER_CHANGED)
    assert failed.type is EventType.AGENT_FAILED
    assert failed.ends_trust
    stale = _event(AgentState.ATTESTED, AgentState.STALE, Reason.LEASE_EXPIRED)
    assert stale.type is EventType.TRUST_ENDED
    assert stale.ends_trust
    # Same state, but not a notice reason (an AK change of a never-attested agent).
    same = _event(AgentState.REGISTERED, AgentState.REGISTERED, Reason.AK_CHANGED)
    assert same.type is EventType.STATE_CHANGED
    assert not same.ends_trust
