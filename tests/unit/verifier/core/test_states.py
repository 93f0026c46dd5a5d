from __future__ import annotations

import pytest

from verifier.core.states import POLLED_STATES, AgentState, Outcome, next_state


@pytest.mark.parametrize(
    ("current", "outcome", "expected"),
    [
        (AgentState.REGISTERED, Outcome.PASSED, AgentState.ATTESTED),
        (AgentState.REGISTERED, Outcome.REBOOTED, AgentState.ATTESTING),
        (AgentState.ATTESTING, Outcome.PASSED, AgentState.ATTESTED),
        (AgentState.ATTESTED, Outcome.PASSED, AgentState.ATTESTED),
        (AgentState.ATTESTED, Outcome.REBOOTED, AgentState.ATTESTING),
        (AgentState.UNREACHABLE, Outcome.REBOOTED, AgentState.ATTESTING),
        (AgentState.ATTESTED, Outcome.INTEGRITY_FAILURE, AgentState.FAILED),
        (AgentState.ATTESTED, Outcome.UNREACHABLE, AgentState.UNREACHABLE),
        (AgentState.UNREACHABLE, Outcome.UNREACHABLE, AgentState.UNREACHABLE),
        (AgentState.UNREACHABLE, Outcome.PASSED, AgentState.ATTESTED),
        (AgentState.UNREACHABLE, Outcome.INTEGRITY_FAILURE, AgentState.FAILED),
    ],
)
def test_transitions(current: AgentState, outcome: Outcome, expected: AgentState) -> None:
    assert next_state(current, outcome) is expected


@pytest.mark.parametrize("outcome", list(Outcome))
def test_failed_and_paused_never_move_by_rounds(outcome: Outcome) -> None:
    assert next_state(AgentState.FAILED, outcome) is AgentState.FAILED
    assert next_state(AgentState.PAUSED, outcome) is AgentState.PAUSED


def test_unreachable_is_never_a_failure() -> None:
    for state in POLLED_STATES:
        assert next_state(state, Outcome.UNREACHABLE) is not AgentState.FAILED
