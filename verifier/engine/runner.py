"""One agent's round: lock, fetch evidence, decide with ``verify_round``, record, reschedule.

This is the imperative shell around the pure round check. A round never raises for anything an
agent does: unreachable agents become ``unreachable`` (retried with backoff, never revoked), wrong
or malformed evidence becomes ``failed`` with its reason code.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from geoattest.errors import AgentUnreachable, IntegrityError
from geoattest.log import bound
from geoattest.wire import EvidenceRequest
from tpm import TpmPublic
from verifier.core.evidence import parse_evidence
from verifier.core.policy import AttestationPolicy
from verifier.core.round import RoundMemory, RoundResult, verify_round
from verifier.core.states import POLLED_STATES, AgentState, Outcome, next_state
from verifier.engine.fetch import AgentClient
from verifier.storage.hot_state import HotState, LiveStatus
from verifier.storage.sql import AgentTarget, Transition, VerifierStore

log = logging.getLogger(__name__)

NONCE_BYTES = 32
# Failing closed on evidence the checks could not evaluate: an attested state must be re-proven
# by every round, so a crash must never leave the last good state standing.
EVIDENCE_UNVERIFIABLE = "evidence_unverifiable"


@dataclass(frozen=True, slots=True, kw_only=True)
class Cadence:
    interval: float  # seconds between rounds of a healthy agent
    lock_ttl: float  # a crashed worker's lock expires after this
    backoff_max: float  # longest wait between retries of an unreachable agent

    def next_due(self, now: float, outcome: Outcome, unreachable_streak: int) -> float:
        if outcome is Outcome.REBOOTED:
            return now  # re-attest the new boot at once, from IMA entry 0
        if outcome is Outcome.UNREACHABLE:
            return now + min(self.interval * 2.0 ** min(unreachable_streak, 16), self.backoff_max)
        return now + self.interval


FailureHook = Callable[[int, Transition], None]


class RoundRunner:
    """Runs rounds; safe to call from several threads (state is per agent, under its lock)."""

    def __init__(
        self,
        *,
        store: VerifierStore,
        hot: HotState,
        client: AgentClient,
        cadence: Cadence,
        on_failure: FailureHook,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._hot = hot
        self._client = client
        self._cadence = cadence
        self._on_failure = on_failure
        self._clock = clock

    def run(
        self,
        target: AgentTarget,
        ak: TpmPublic,
        policy: AttestationPolicy,
        location_key: TpmPublic | None = None,
    ) -> RoundResult | None:
        """One round for ``target``; ``None`` when another worker holds its lock or it is not
        polled (failed, paused)."""
        token = uuid.uuid4().hex
        locked, loaded = self._hot.lock_and_load(target.agent_id, token, self._cadence.lock_ttl)
        if not locked:
            return None
        released = False
        try:
            with bound(agent_id=target.agent_id, round_id=token[:12]):
                status = loaded or LiveStatus(state=target.state, memory=RoundMemory())
                if status.state not in POLLED_STATES:
                    self._hot.finish_round(target.agent_id, token, None, None)
                    released = True
                    return None
                result, new_status, due = self._run_locked(
                    target, ak, policy, location_key, status, token
                )
                if not self._hot.finish_round(target.agent_id, token, new_status, due):
                    log.warning("round outlived its lock; its result was discarded")
                released = True
                return result
        finally:
            if not released:
                self._hot.unlock(target.agent_id, token)

    def _run_locked(
        self,
        target: AgentTarget,
        ak: TpmPublic,
        policy: AttestationPolicy,
        location_key: TpmPublic | None,
        status: LiveStatus,
        token: str,
    ) -> tuple[RoundResult, LiveStatus, float | None]:
        """The round's result, the status to store and when the next round is due (``None``:
        not polled any more)."""
        if status.state is AgentState.REGISTERED:  # the first round: registered -> attesting
            self._transition(
                target.agent_id,
                status.state,
                AgentState.ATTESTING,
                RoundResult(outcome=Outcome.PASSED, memory=status.memory, reason="first_round"),
            )
            status = replace(status, state=AgentState.ATTESTING)
        result = self._attest(target, ak, policy, location_key, status.memory)
        now = self._clock()
        new_state = next_state(status.state, result.outcome)
        streak = status.unreachable_streak + 1 if result.outcome is Outcome.UNREACHABLE else 0
        # Only a round that still holds its lock may move the agent (a stalled round must not
        # undo what a newer round or an operator decided meanwhile).
        if new_state is not status.state and self._hot.holds_lock(target.agent_id, token):
            self._transition(target.agent_id, status.state, new_state, result)
        new_status = LiveStatus(
            state=new_state, memory=result.memory, last_round_at=now, unreachable_streak=streak
        )
        due = None
        if new_state in POLLED_STATES:
            due = self._cadence.next_due(now, result.outcome, streak)
        return result, new_status, due

    def _attest(
        self,
        target: AgentTarget,
        ak: TpmPublic,
        policy: AttestationPolicy,
        location_key: TpmPublic | None,
        memory: RoundMemory,
    ) -> RoundResult:
        nonce = os.urandom(NONCE_BYTES)
        request = EvidenceRequest(
            nonce=nonce.hex(),
            pcrs=policy.pcr_selection(),
            ima_offset=memory.ima_offset_for(policy.ima_banks),
            include_location=policy.location is not None,
            include_boot_log=policy.boot_log_replay,
        )
        try:
            response = self._client.fetch_evidence(
                target.agent_url, target.tls_certificate, request
            )
            evidence = parse_evidence(response, nonce)
        except AgentUnreachable as e:
            log.info("agent unreachable: %s", e.message)
            return RoundResult(
                outcome=Outcome.UNREACHABLE, memory=memory, reason=e.code, message=e.message
            )
        except IntegrityError as e:  # malformed evidence, or no location under a PoG policy
            return RoundResult(
                outcome=Outcome.INTEGRITY_FAILURE, memory=memory, reason=e.code, message=e.message
            )
        try:
            result = verify_round(
                evidence,
                ak=ak,
                policy=policy,
                previous=memory,
                now=datetime.fromtimestamp(self._clock(), UTC),
                location_key=location_key,
            )
        except Exception:  # a bug on evidence we cannot judge: fail closed, never stay attested
            log.exception("evidence could not be verified")
            return RoundResult(
                outcome=Outcome.INTEGRITY_FAILURE,
                memory=memory,
                reason=EVIDENCE_UNVERIFIABLE,
                message="the verifier could not evaluate this evidence (see the verifier log)",
            )
        if result.outcome is Outcome.INTEGRITY_FAILURE:
            log.warning("integrity failure %s: %s", result.reason, result.message)
        return result

    def _transition(
        self, agent_id: str, old: AgentState, new: AgentState, result: RoundResult
    ) -> None:
        transition = Transition(
            agent_id=agent_id,
            from_state=old,
            to_state=new,
            reason=result.reason,
            message=result.message or None,
            details=result.details,
        )
        event_id = self._store.record_transition(
            transition, datetime.fromtimestamp(self._clock(), UTC)
        )
        if new is AgentState.FAILED:
            self._on_failure(event_id, transition)
