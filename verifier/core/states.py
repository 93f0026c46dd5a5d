"""The agent state machine of the verifier, with the reasons that move it.

    registered ──first round──▶ attesting ──pass──▶ attested
         ▲                          │                  │  ▲
         │ operator re-admits       │ integrity        │  │ a full fresh round passes
      failed ◀──────────────────────┴──────────────────┘  │
                               unreachable ◀── no answer ──┘ (retried with backoff, never revoked)
    paused: an operator stopped rounds; resume returns to the state before.

Integrity failures and reachability faults never mix: only evidence that is wrong fails an agent.
"""

from __future__ import annotations

from enum import StrEnum


class AgentState(StrEnum):
    REGISTERED = "registered"
    ATTESTING = "attesting"
    ATTESTED = "attested"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    PAUSED = "paused"


class Outcome(StrEnum):
    """What one round concluded."""

    PASSED = "passed"  # every check held
    REBOOTED = "rebooted"  # a valid quote shows a reboot: IMA replay restarts from entry 0
    INTEGRITY_FAILURE = "integrity_failure"  # evidence is wrong
    UNREACHABLE = "unreachable"  # no usable answer from the agent (transport)


# States in which the verifier runs rounds.
POLLED_STATES = frozenset(
    {AgentState.REGISTERED, AgentState.ATTESTING, AgentState.ATTESTED, AgentState.UNREACHABLE}
)


def next_state(current: AgentState, outcome: Outcome) -> AgentState:
    """The state after a round with ``outcome``; states that are not polled never move here."""
    if current not in POLLED_STATES:
        return current
    if outcome is Outcome.PASSED:
        return AgentState.ATTESTED
    if outcome is Outcome.INTEGRITY_FAILURE:
        return AgentState.FAILED
    if outcome is Outcome.UNREACHABLE:
        return AgentState.UNREACHABLE
    # A reboot proves nothing bad, and not yet that the new boot's runtime is good: the agent is
    # attesting again until a full round of the new boot passes.
    return AgentState.ATTESTING
