"""Fresh-on-demand rounds: a relying party's nonce bound into a quote taken now (RFC 9334's
background-check model).

The round is an ordinary round, run at once through the worker's ``RoundRunner`` in this process
(lock, fence, record, events: nothing is special about it but its nonce). Its nonce is the relying
party's nonce followed by 16 random bytes of the verifier's, so the stored record shows the
binding (``evidence.nonce`` starts with the token's ``eat_nonce``) and the verifier still never
asks twice for the same quote. A round already running for the agent is waited for (at most
``lock_wait`` seconds), then this one runs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from geoattest.errors import AgentNotAttested, FreshRoundBusy, FreshRoundFailed
from verifier.core.states import AgentMode, AgentState, Outcome
from verifier.engine.round_target import RoundTarget
from verifier.engine.runtime import VerifierRuntime
from verifier.storage.verdicts import Committed

__all__ = ["FreshRounds", "fresh_nonce"]

log = logging.getLogger(__name__)

VERIFIER_NONCE_BYTES = 16


def fresh_nonce(relying_party_nonce: bytes) -> bytes:
    """The round's nonce: the relying party's, then 16 bytes of the verifier's own."""
    return relying_party_nonce + os.urandom(VERIFIER_NONCE_BYTES)


class FreshRounds:
    def __init__(self, runtime: Callable[[], VerifierRuntime], *, lock_wait: float) -> None:
        self._runtime = runtime
        self._lock_wait = lock_wait

    def run(self, agent_id: str, relying_party_nonce: bytes) -> Committed:
        """Run a round of ``agent_id`` now, bound to the nonce; the committed passed round.

        Raises ``FreshRoundBusy`` (no lock in time, or the verdict could not be committed),
        ``FreshRoundFailed`` (the round did not pass: the agent's state moved accordingly) and
        ``AgentNotAttested`` (the agent is not one the verifier polls, or its policy or keys
        are unusable)."""
        runtime = self._runtime()
        fleet = runtime.fleet()
        target = fleet.targets.get(agent_id)
        if target is None:
            raise AgentNotAttested(f"agent {agent_id!r} is not under verification")
        if target.mode is AgentMode.PUSH:  # nobody can reach it: its own posts are its rounds
            raise AgentNotAttested(f"agent {agent_id!r} pushes its evidence: no fresh rounds")
        policy, ak = fleet.policies.get(target.policy_name), fleet.aks.get(agent_id)
        if policy is None or ak is None:
            raise AgentNotAttested(f"agent {agent_id!r} cannot be judged now (policy or keys)")
        round_target = RoundTarget(
            target=target,
            ak=ak,
            policy=policy,
            location_key=fleet.location_keys.get(agent_id),
            receiver=fleet.receivers.get(agent_id),
        )
        report = runtime.runner.run(
            round_target, nonce=fresh_nonce(relying_party_nonce), lock_wait=self._lock_wait
        )
        if report is None:
            raise FreshRoundBusy(
                f"agent {agent_id!r}: no fresh round within {self._lock_wait:.1f} s (another "
                "round held the agent, or it is not polled)"
            )
        if report.committed is None:
            raise FreshRoundBusy(f"agent {agent_id!r}: the fresh round's verdict was not stored")
        result = report.result
        if result.outcome is not Outcome.PASSED:
            reason = result.reason.value if result.reason is not None else result.outcome.value
            raise FreshRoundFailed(f"the fresh round of {agent_id!r} did not pass: {reason}")
        committed = report.committed
        if committed.record.to_state is not AgentState.ATTESTED:
            raise AgentNotAttested(
                f"agent {agent_id!r} is {committed.record.to_state.value} after its fresh round"
            )
        return committed
