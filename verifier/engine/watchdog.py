"""The watchdog: records ``stale`` for agents whose lease ran out, naming the cause it knows.

Readers already show such an agent ``stale`` (``verifier.core.lease``); the watchdog makes it a
recorded transition with an event, so that operators, webhooks consumers and the evidence chain
see when and why the verifier stopped vouching. It is a verifier fault, never an integrity
failure: no revocation storm, and the agent's rounds go on (a passing round attests it again).

The cause is the last verifier fault a round marked for the agent (``round_crashed``,
``record_failed``, ``lock_lost``, a deadline), ``policy_unusable`` when its policy does not load,
or ``lease_expired`` when nothing is known (no worker ran its rounds at all).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass

from verifier.core.reasons import Reason
from verifier.core.record_types import RecordKind
from verifier.core.round_record import RecordOrigin, action_record
from verifier.core.round_types import RoundMemory
from verifier.core.states import AgentState
from verifier.engine.committer import Committer, Publisher
from verifier.engine.fleet import FleetConfig, LeaseDefaults
from verifier.storage.hot_state import HotState, LiveStatus
from verifier.storage.sql import VerifierStore
from verifier.storage.verdicts import Committed, VerdictDraft

log = logging.getLogger(__name__)

WATCHDOG_LOCK_TTL = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Watchdog:
    store: VerifierStore
    hot: HotState
    committer: Committer
    publish: Publisher
    lease: LeaseDefaults
    origin: RecordOrigin

    def expire(self, fleet: FleetConfig, now: dt.datetime) -> int:
        """Move every agent whose lease ran out to ``stale``; returns how many moved."""
        shortest = min(
            [self.lease.max_age] + [p.max_age for p in fleet.policies.values() if p.max_age],
        )
        candidates = self.store.attested_since_before(now - shortest)
        if not candidates:
            return 0
        faults = self.hot.faults(agent_id for agent_id, _, _ in candidates)
        moved = 0
        for agent_id, policy_name, last_passed in candidates:
            max_age = self.lease.max_age_of(fleet.policies.get(policy_name))
            if last_passed is not None and now - last_passed <= max_age:
                continue
            cause = _cause(faults.get(agent_id), policy_name, fleet.unusable, max_age)
            try:
                moved += self._mark_stale(agent_id, cause, last_passed, now)
            except Exception:  # one agent's trouble must not stop the others'
                log.exception("watchdog could not mark agent %s stale", agent_id)
        return moved

    def _mark_stale(
        self,
        agent_id: str,
        cause: tuple[Reason, str],
        last_passed: dt.datetime | None,
        now: dt.datetime,
    ) -> int:
        token = uuid.uuid4().hex
        fence = self.hot.take_lock(agent_id, token, WATCHDOG_LOCK_TTL)
        if fence is None:
            return 0  # a round holds the agent; readers show it stale meanwhile
        try:
            reason, message = cause
            details = {"cause": reason.value}
            if last_passed is not None:
                details["last_passed_at"] = last_passed.isoformat()
            record = action_record(
                agent_id=agent_id,
                round_id=token,
                at=now,
                kind=RecordKind.WATCHDOG,
                origin=self.origin,
                reason=reason,
                message=message,
                details=details,
            )
            result = self.committer.commit(
                VerdictDraft(record=record, fence=fence, decide=_only_attested),
                timeout=WATCHDOG_LOCK_TTL,
            )
            if not isinstance(result, Committed):
                return 0
            live = self.hot.load(agent_id)
            memory = live.memory if live is not None else RoundMemory()
            self.hot.store_and_unlock(
                agent_id, token, LiveStatus(state=AgentState.STALE, memory=memory)
            )
            log.warning("agent %s stale: %s (%s)", agent_id, reason, message)
            self.publish(result)
            return 1
        finally:
            self.hot.unlock(agent_id, token)


def _only_attested(stored: AgentState) -> AgentState | None:
    return AgentState.STALE if stored is AgentState.ATTESTED else None


def _cause(
    fault: tuple[str, str] | None,
    policy_name: str,
    unusable: dict[str, str],
    max_age: dt.timedelta,
) -> tuple[Reason, str]:
    if policy_name in unusable:
        return (
            Reason.POLICY_UNUSABLE,
            f"policy {policy_name} cannot be used: {unusable[policy_name]}",
        )
    if fault is not None:
        try:
            return Reason(fault[0]), fault[1]
        except ValueError:
            pass
    seconds = max_age.total_seconds()
    return Reason.LEASE_EXPIRED, f"no round passed in the last {seconds:.0f} s"
