"""One agent's round: lock, judge, commit the verdict, reschedule, tell the world.

The imperative shell around the pure round. Every path after a round starts ends in a recorded
verdict or a named verifier fault, never in silence:

- the verdict (record, state, lease, event, webhook rows) is committed by ``VerdictStore`` under
  the round's fencing token, after the round has confirmed it still holds the agent's lock;
- a round that lost its lock, whose commit the database refused or failed, or that crashed,
  commits nothing and marks a fault (``lock_lost``, ``record_failed``, ``round_crashed``): the
  agent's lease is not renewed, and the watchdog names that cause when the lease runs out.

Redis keeps the round memory and schedule; it is updated only after the commit, fenced by the
lock token (``HotState.finish_round``), and repaired from SQL when SQL refused a stale view.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import redis

from geoattest.log import bound
from verifier.core.measured import measured_files
from verifier.core.reasons import Reason
from verifier.core.record_types import EvidenceRecord
from verifier.core.round_record import RecordOrigin, round_record
from verifier.core.round_types import RoundEvidence, RoundMemory, RoundResult
from verifier.core.states import POLLED_STATES, AgentState, Outcome, next_state
from verifier.engine.cadence import Cadence
from verifier.engine.committer import Committer, Publisher
from verifier.engine.fetch import EvidenceSource
from verifier.engine.judge import judge
from verifier.engine.round_outcome import count_round, log_outcome
from verifier.engine.round_target import RoundTarget
from verifier.engine.zone_hints import ZoneHintCache
from verifier.storage.hot_state import HotState, LiveStatus
from verifier.storage.runtime_digests import RuntimeDigests
from verifier.storage.verdicts import CommitResult, Committed, Refused, VerdictDraft

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundReport:
    result: RoundResult
    committed: Committed | None  # None: nothing was committed (see the fault)
    fault: Reason | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class _Judged:
    """A round judged under its lock, its verdict drafted and not yet committed."""

    rt: RoundTarget
    token: str
    fence: int
    status: LiveStatus  # the agent's hot state the round started from
    evidence: RoundEvidence | None
    result: RoundResult
    record: EvidenceRecord
    started: float
    ended: float
    pinned: bool  # a round from a given source (a push): the schedule is not its to set


class RoundRunner:
    """Runs rounds; safe to call from several threads (state is per agent, under its lock)."""

    def __init__(
        self,
        *,
        hot: HotState,
        source: EvidenceSource,
        committer: Committer,
        publish: Publisher,
        cadence: Cadence,
        origin: RecordOrigin,
        clock: Callable[[], float] = time.time,
        measured: RuntimeDigests | None = None,
    ) -> None:
        """``measured``: where passed rounds leave the files their IMA replay measured (the
        approved runtime tokens name); None records nothing."""
        self._measured = measured
        self._hot = hot
        self._source = source
        self._committer = committer
        self._publish = publish
        self._cadence = cadence
        self._origin = origin
        self._clock = clock
        self._zone_hints = ZoneHintCache()

    def run(
        self,
        round_target: RoundTarget,
        *,
        nonce: bytes | None = None,
        lock_wait: float = 0.0,
        claimed_at: float | None = None,
        source: EvidenceSource | None = None,
    ) -> RoundReport | None:
        """One round, waiting for its verdict to commit; ``None`` when another writer holds the
        agent's lock (for longer than ``lock_wait`` seconds), when it is not polled, or when a
        round already ran since ``claimed_at`` (the dispatch that enqueued this one: a batch
        redelivered or claimed twice runs each agent once). ``nonce``: the round's nonce, when
        the caller binds one (a fresh round for a relying party); random otherwise."""
        agent_id = round_target.target.agent_id
        token = uuid.uuid4().hex
        locked = self._lock(agent_id, token, lock_wait, nonce, claimed_at)
        if locked is None:
            return None
        with self._boundary(agent_id, token):
            return self._locked(round_target, token, *locked, nonce, source)
        return None

    def start(self, round_target: RoundTarget, *, claimed_at: float | None = None) -> bool:
        """A scheduled round that does not wait for its verdict: judged on this thread, then
        committed with its group and finished (hot state, lock, publication) on the committer's
        writer thread (ADR 23). True when a round was judged and handed on; False as ``run``
        returns ``None``. The lock is held until the writer finishes the round, so the agent's
        next round cannot start before this one's verdict is committed."""
        agent_id = round_target.target.agent_id
        token = uuid.uuid4().hex
        locked = self._lock(agent_id, token, 0.0, None, claimed_at)
        if locked is None:
            return False
        with self._boundary(agent_id, token):
            judged = self._judge(round_target, token, *locked, None, None)
            if judged is None:
                return False
            draft = self._draft(judged)
            if isinstance(draft, Refused):
                self._finish(judged, draft)
            else:
                self._committer.submit(
                    draft,
                    functools.partial(self._after_commit, judged),
                    timeout=self._cadence.commit_timeout,
                )
            return True
        return False

    def _after_commit(self, judged: _Judged, outcome: CommitResult | BaseException) -> None:
        """``start``'s round once its verdict committed or failed to (on the writer thread)."""
        with self._boundary(judged.rt.target.agent_id, judged.token):
            self._finish(judged, self._settle(judged, outcome))

    def _lock(
        self,
        agent_id: str,
        token: str,
        lock_wait: float,
        nonce: bytes | None,
        claimed_at: float | None,
    ) -> tuple[int, LiveStatus | None] | None:
        """The agent's lock (its fence) and hot state, or None: see ``run``."""
        deadline = time.monotonic() + lock_wait
        try:
            while True:
                last = time.monotonic() >= deadline
                # A scheduled round's last try leaves the agent due when the lock expires.
                retry_from = self._clock() if last and nonce is None else None
                fence, loaded = self._hot.lock_and_load(
                    agent_id, token, self._cadence.lock_ttl, retry_from=retry_from
                )
                if fence is not None:
                    break
                if last:
                    return None
                time.sleep(0.002)
        except (redis.ConnectionError, redis.TimeoutError) as e:
            # No lock, no memory, no schedule: nothing to judge with. The lease ends the
            # agent's attestation if this lasts; reconcile reschedules it when Redis is back.
            log.warning("round of %s not started: Redis unavailable (%s)", agent_id, e)
            return None
        if (
            claimed_at is not None
            and loaded is not None
            and loaded.last_round_at is not None
            and loaded.last_round_at > claimed_at
        ):
            self._hot.unlock(agent_id, token)  # it ran meanwhile and rescheduled itself
            return None
        return fence, loaded

    @contextmanager
    def _boundary(self, agent_id: str, token: str) -> Iterator[None]:
        """The outermost boundary of a round: whatever escapes it is named, never silent."""
        with bound(agent_id=agent_id, round_id=token[:12]):
            try:
                yield
            except (redis.ConnectionError, redis.TimeoutError) as e:
                log.warning("round abandoned: Redis unavailable (%s)", e)  # a fault, not a bug
                self._fault(agent_id, Reason.ROUND_CRASHED, "Redis unavailable during the round")
            except Exception:
                log.exception("round crashed")
                self._fault(agent_id, Reason.ROUND_CRASHED, "the round crashed (verifier log)")
                self._hot.unlock(agent_id, token)

    def _locked(
        self,
        rt: RoundTarget,
        token: str,
        fence: int,
        loaded: LiveStatus | None,
        nonce: bytes | None = None,
        source: EvidenceSource | None = None,
    ) -> RoundReport | None:
        judged = self._judge(rt, token, fence, loaded, nonce, source)
        if judged is None:
            return None
        return self._finish(judged, self._commit(judged))

    def _judge(
        self,
        rt: RoundTarget,
        token: str,
        fence: int,
        loaded: LiveStatus | None,
        nonce: bytes | None,
        source: EvidenceSource | None,
    ) -> _Judged | None:
        """Judge the round and draft its verdict; None (lock released) for an agent not polled."""
        agent_id = rt.target.agent_id
        status = loaded or LiveStatus(state=rt.target.state, memory=RoundMemory())
        if status.state not in POLLED_STATES:
            self._hot.finish_round(agent_id, token, None, None)
            return None
        started = self._clock()
        judged = judge(
            source=source or self._source,
            agent_url=rt.target.agent_url,
            tls_certificate=rt.target.tls_certificate,
            ak=rt.ak,
            policy=rt.policy,
            location_key=rt.location_key,
            memory=status.memory,
            clock=self._clock,
            nonce=nonce,
            receiver=rt.receiver,
            zone_hints=self._zone_hints.get(agent_id),
        )
        result = judged.result
        self._zone_hints.put(agent_id, result.zone_hints)
        ended = self._clock()
        record = round_record(
            agent_id=agent_id,
            round_id=token,
            started_at=_utc(started),
            ended_at=_utc(ended),
            judged_at=judged.judged_at,
            origin=self._origin,
            policy=rt.policy,
            ak=rt.ak,
            location_key=rt.location_key,
            previous=status.memory,
            evidence=judged.evidence,
            result=result,
            receiver=rt.receiver,
        )
        return _Judged(
            rt=rt,
            token=token,
            fence=fence,
            status=status,
            evidence=judged.evidence,
            result=result,
            record=record,
            started=started,
            ended=ended,
            pinned=source is not None,
        )

    def _finish(self, j: _Judged, committed: CommitResult | None) -> RoundReport:
        """After the commit: count, log, move the hot state on and release the lock, publish."""
        agent_id = j.rt.target.agent_id
        result, status, ended = j.result, j.status, j.ended
        if committed is None:
            count_round(result, ended - j.started, fault=Reason.RECORD_FAILED)
            return RoundReport(result=result, committed=None, fault=Reason.RECORD_FAILED)
        if isinstance(committed, Refused):
            self._repair(agent_id, j.token, committed, ended, status)
            count_round(result, ended - j.started, fault=Reason.LOCK_LOST)
            return RoundReport(result=result, committed=None, fault=Reason.LOCK_LOST)
        count_round(result, ended - j.started)
        new_state = committed.record.to_state
        log_outcome(committed.record, result)
        passed = result.outcome is Outcome.PASSED
        streak = status.unreachable_streak + 1 if result.outcome is Outcome.UNREACHABLE else 0
        # A verifier fault keeps the memory the round started from; any verdict moves it on.
        memory = status.memory if result.outcome is Outcome.VERIFIER_FAULT else result.memory
        new_status = LiveStatus(
            state=new_state, memory=memory, last_round_at=ended, unreachable_streak=streak
        )
        due = None
        if new_state in POLLED_STATES and not j.pinned:
            due = self._cadence.next_due(ended, result.outcome, streak)
        if result.outcome is Outcome.VERIFIER_FAULT and result.reason is not None:
            self._hot.mark_fault(agent_id, result.reason, result.message)
        if not self._hot.finish_round(agent_id, j.token, new_status, due, clear_fault=passed):
            log.warning("lock expired while the verdict committed; the verdict stands")
        if passed and j.evidence is not None:
            self._remember_measured(j.rt, j.evidence, result)
        self._publish(committed)
        return RoundReport(result=result, committed=committed)

    def _remember_measured(
        self, rt: RoundTarget, evidence: RoundEvidence, result: RoundResult
    ) -> None:
        """The files this passed round's IMA replay measured, for tokens' approved runtime."""
        clock = result.memory.clock
        if self._measured is None or rt.policy.runtime is None or clock is None:
            return
        files = measured_files(evidence.ima_lines[: result.new_ima_entries])
        try:
            self._measured.record(
                rt.target.agent_id, clock.reset_count, files, replace=evidence.ima_offset == 0
            )
        except Exception:  # a short set only weakens tokens' workload tier, never the verdict
            log.exception("could not record the measured files of a passed round")

    def _commit(self, j: _Judged) -> CommitResult | None:
        draft = self._draft(j)
        if isinstance(draft, Refused):
            return draft
        try:
            outcome: CommitResult | BaseException = self._committer.commit(
                draft, timeout=self._cadence.commit_timeout
            )
        except Exception as e:  # database down, locked, or slower than the timeout
            outcome = e
        return self._settle(j, outcome)

    def _draft(self, j: _Judged) -> VerdictDraft | Refused:
        """The verdict to commit, or a refusal when the round outlived its lock."""
        rt, result = j.rt, j.result
        agent_id = rt.target.agent_id
        margin = self._cadence.commit_timeout + 5.0
        if not self._hot.confirm_lock(agent_id, j.token, margin):
            log.warning("round outlived its lock; its result was discarded")
            self._fault(agent_id, Reason.LOCK_LOST, "a round outlived its lock")
            return Refused(why="fence")
        outcome = result.outcome

        def decide(stored: AgentState) -> AgentState | None:
            if stored not in POLLED_STATES:
                return None  # paused or failed since this round started: not ours to move
            return next_state(stored, outcome)

        return VerdictDraft(
            record=j.record,
            fence=j.fence,
            decide=decide,
            passed=outcome is Outcome.PASSED,
            ima_entries_verified=(
                result.memory.ima_offset_for(rt.policy.ima_banks)
                if outcome is Outcome.PASSED
                else None
            ),
            sample_every=self._cadence.sample_every,
            notice=result.notice if outcome is Outcome.PASSED else None,
        )

    def _settle(self, j: _Judged, outcome: CommitResult | BaseException) -> CommitResult | None:
        """The commit's result, or None (a fault marked, the round rescheduled) if it failed."""
        if not isinstance(outcome, BaseException):
            return outcome
        agent_id = j.rt.target.agent_id
        log.warning("the verdict could not be recorded: %s", outcome)
        self._fault(agent_id, Reason.RECORD_FAILED, f"the verdict could not be recorded: {outcome}")
        # Nothing was recorded, so nothing moves: retry at the normal cadence.
        self._hot.finish_round(agent_id, j.token, None, self._clock() + self._cadence.interval)
        return None

    def _repair(
        self, agent_id: str, token: str, refused: Refused, now: float, status: LiveStatus
    ) -> None:
        """SQL refused this round because Redis had a stale view: a fence counter that restarted
        (Redis lost its data), or a cached state SQL no longer has. Take SQL's word and retry."""
        if refused.why == "missing" or refused.stored_state is None:
            self._hot.finish_round(agent_id, token, None, None)  # removed meanwhile
            return
        if refused.stored_fence:
            self._hot.raise_fence(agent_id, refused.stored_fence)
        stored = refused.stored_state
        new_status = None if stored is status.state else replace(status, state=stored)
        self._hot.finish_round(
            agent_id, token, new_status, now if stored in POLLED_STATES else None
        )

    def _fault(self, agent_id: str, reason: Reason, message: str) -> None:
        try:
            self._hot.mark_fault(agent_id, reason, message)
        except (redis.ConnectionError, redis.TimeoutError):  # the lease still ends attestation
            log.warning("could not record the fault %s: Redis unavailable", reason)
        except Exception:
            log.exception("could not record the fault %s", reason)


def _utc(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC)
