"""The agent state machine of the verifier, with the outcomes that move it.

    registered ──first round──▶ attesting ──pass──▶ attested ◀──────────────┐
         ▲                          │                  │  │                  │ a round passes
         │ operator re-admits       │ integrity        │  │ lease ran out    │
      failed ◀──────────────────────┴──────────────────┘  └──▶ stale ────────┤
                               unreachable ◀── no usable answer ─────────────┘
    paused: an operator stopped rounds; resume returns to attesting.

Three kinds of trouble never mix: an *integrity failure* (evidence is wrong: ``failed``, revoked,
alerted); a *reachability fault* (no usable answer: ``unreachable``, retried with backoff); a
*verifier fault* (nothing judged the agent within its lease: ``stale``). Only the first revokes.

``attested`` as stored is never taken at its word: readers derive the state through
``verifier.core.lease``, which turns an ``attested`` without a recent passed round into ``stale``.
"""

from __future__ import annotations

from enum import StrEnum


class AgentMode(StrEnum):
    """Who opens the connection of a round: the verifier (``pull``) or the agent (``push``)."""

    PULL = "pull"
    PUSH = "push"


class AgentState(StrEnum):
    REGISTERED = "registered"
    ATTESTING = "attesting"
    ATTESTED = "attested"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    STALE = "stale"
    PAUSED = "paused"


class Outcome(StrEnum):
    """What one round concluded."""

    PASSED = "passed"  # every check held
    REBOOTED = "rebooted"  # a valid quote shows a reboot: IMA replay restarts from entry 0
    INTEGRITY_FAILURE = "integrity_failure"  # evidence is wrong
    UNREACHABLE = "unreachable"  # no usable answer from the agent (transport, protocol)
    VERIFIER_FAULT = "verifier_fault"  # the verifier could not judge (its own bug or part)


# States in which the verifier runs rounds.
POLLED_STATES = frozenset(
    {
        AgentState.REGISTERED,
        AgentState.ATTESTING,
        AgentState.ATTESTED,
        AgentState.UNREACHABLE,
        AgentState.STALE,
    }
)


def next_state(current: AgentState, outcome: Outcome) -> AgentState:
    """The state after a round with ``outcome``; states that are not polled never move here.

    A verifier fault changes nothing: it is no verdict, and the lease (not this function) ends an
    ``attested`` that no round renews.
    """
    if current not in POLLED_STATES:
        return current
    if outcome is Outcome.PASSED:
        return AgentState.ATTESTED
    if outcome is Outcome.INTEGRITY_FAILURE:
        return AgentState.FAILED
    if outcome is Outcome.UNREACHABLE:
        return AgentState.UNREACHABLE
    if outcome is Outcome.VERIFIER_FAULT:
        return current
    # A reboot proves nothing bad, and not yet that the new boot's runtime is good: the agent is
    # attesting again until a full round of the new boot passes.
    return AgentState.ATTESTING
