"""The round runner in-process through the ``EvidenceSource`` seam, on a real Redis and a real
SQLite file: stale locks, fences, backoff, the fail-closed branches, repair after Redis lost its
data, and the watchdog. Each fail-closed path has a test that fails when the path is removed."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import redis

from tests.support.runner_stack import RunnerStack, runner_stack
from verifier.core.chain import FoldLink, RecordLink, check_chain
from verifier.core.reasons import Reason
from verifier.core.record_types import RecordKind
from verifier.core.reverify import reverify_record
from verifier.core.states import AgentState, Outcome
from verifier.storage.hot_state import SCHEDULE_KEY
from verifier.storage.records import FoldSummary

pytestmark = pytest.mark.redis


@pytest.fixture
def stack(tmp_path: Path, redis_url: str) -> Iterator[RunnerStack]:
    with runner_stack(tmp_path, redis_url) as running:
        yield running


def _first(stack: RunnerStack) -> str:
    return next(iter(stack.sims))


def _attested(stack: RunnerStack, agent_id: str) -> None:
    report = stack.round(agent_id)
    assert report is not None
    assert report.result.outcome is Outcome.PASSED, report.result.message
    assert stack.state(agent_id) is AgentState.ATTESTED


def _chain_intact(stack: RunnerStack, agent_id: str) -> int:
    links: list[RecordLink | FoldLink] = []
    for item in stack.records.page(agent_id, limit=1000):
        if isinstance(item, FoldSummary):
            links.append(
                FoldLink(
                    first_seq=item.first_seq, last_seq=item.last_seq, prev=item.prev, head=item.head
                )
            )
        else:
            links.append(RecordLink(canonical=stack.records.get(agent_id, item.round_id).canonical))
    report = check_chain(agent_id, links)
    assert report.intact, report.breaks
    return report.last_seq


def test_rounds_commit_chained_records_that_reverify(stack: RunnerStack) -> None:
    agent_id = _first(stack)
    for _ in range(3):
        _attested(stack, agent_id)
    view = stack.store.get_agent(agent_id)
    assert view.records == 3
    assert view.last_passed_at is not None
    assert _chain_intact(stack, agent_id) == 3
    target = stack.target(agent_id)
    for summary in stack.records.page(agent_id):
        assert not isinstance(summary, FoldSummary)
        record = stack.records.get(agent_id, summary.round_id).record
        again = reverify_record(record, ak=target.ak, policy=target.policy)
        assert again.consistent, again.mismatches
    events = stack.store.events(agent_id)
    assert [(e.from_state, e.to_state) for e in events] == [
        (AgentState.REGISTERED, AgentState.ATTESTED)
    ]


def test_a_round_that_outlived_its_lock_commits_nothing(tmp_path: Path, redis_url: str) -> None:
    with runner_stack(tmp_path, redis_url, lock_ttl=0.3) as stack:
        agent_id = _first(stack)
        _attested(stack, agent_id)
        before = stack.store.get_agent(agent_id)
        stack.source.stall[agent_id] = 0.6  # the round outlives its 0.3 s lock
        report = stack.round(agent_id)
        assert report is not None
        assert report.committed is None
        assert report.fault is Reason.LOCK_LOST
        after = stack.store.get_agent(agent_id)
        assert after.records == before.records
        assert after.last_passed_at == before.last_passed_at  # the lease was not renewed
        assert stack.hot.faults([agent_id])[agent_id][0] == "lock_lost"


def test_a_scheduled_round_that_finds_the_agent_locked_leaves_it_due_at_the_lock_s_expiry(
    tmp_path: Path, redis_url: str
) -> None:
    """A killed worker's lock would otherwise keep the agent at its claim horizon: the round
    that finds it pulls the agent's next round to the lock's expiry (never later)."""
    with runner_stack(tmp_path, redis_url) as stack:
        agent_id = _first(stack)
        _attested(stack, agent_id)
        assert stack.hot.take_lock(agent_id, "killed-worker", ttl_seconds=2.0)
        horizon = time.time() + 60
        stack.hot.schedule(agent_id, due=horizon)
        before = time.time()
        assert stack.round(agent_id) is None  # locked: not started
        due = redis.Redis.from_url(redis_url).zscore(SCHEDULE_KEY, agent_id)
        assert due is not None
        assert before + 1.5 <= due <= time.time() + 2.0


def test_an_older_writer_cannot_commit_over_a_newer_one(tmp_path: Path, redis_url: str) -> None:
    """A stalled round resumes after another writer took the agent: its commit is refused by its
    fence, whichever of the two reaches the database first."""
    with runner_stack(tmp_path, redis_url, lock_ttl=0.3) as stack:
        agent_id = _first(stack)
        _attested(stack, agent_id)
        hold = stack.source.hold(agent_id)  # the stalled round fetches, then waits
        stalled: list[object] = []
        thread = threading.Thread(target=lambda: stalled.append(stack.round(agent_id)))
        thread.start()
        hold.wait_taken()
        time.sleep(0.45)  # the stalled round's lock has expired: a newer round takes the agent
        newer = stack.round(agent_id)
        hold.release()
        thread.join()
        assert newer is not None
        assert newer.committed is not None
        old = stalled[0]
        assert old is not None
        assert getattr(old, "committed", "x") is None
        assert stack.store.get_agent(agent_id).records == 2
        assert _chain_intact(stack, agent_id) == 2


def test_an_unreachable_agent_is_retried_with_backoff(stack: RunnerStack) -> None:
    agent_id = _first(stack)
    _attested(stack, agent_id)
    stack.source.offline.add(agent_id)
    waits = []
    for _ in range(5):
        report = stack.round(agent_id)
        assert report is not None
        assert report.result.outcome is Outcome.UNREACHABLE
        due, status = stack.hot.due_of(agent_id), stack.hot.load(agent_id)
        assert due is not None
        assert status is not None
        assert status.last_round_at is not None
        waits.append(due - status.last_round_at)  # scheduled from the round's end
    # 0.2 s interval doubling per miss (0.4, 0.8, 1.6, 3.2) and capped at backoff_max (3 s)
    assert [round(w, 1) for w in waits] == [0.4, 0.8, 1.6, 3.0, 3.0]
    assert stack.state(agent_id) is AgentState.UNREACHABLE
    assert all(e.to_state is not AgentState.FAILED for e in stack.store.events(agent_id))
    stack.source.offline.clear()
    _attested(stack, agent_id)


def test_a_crash_while_fetching_is_a_named_fault_and_the_lease_ends(
    tmp_path: Path, redis_url: str
) -> None:
    with runner_stack(tmp_path, redis_url, max_age=0.5) as stack:
        agent_id = _first(stack)
        _attested(stack, agent_id)
        stack.source.crash.add(agent_id)
        report = stack.round(agent_id)
        assert report is not None
        assert report.result.outcome is Outcome.VERIFIER_FAULT
        assert stack.state(agent_id) is AgentState.ATTESTED  # no verdict, nothing moved …
        time.sleep(0.6)
        assert stack.expire() == 1  # … but the lease ran out and the watchdog says why
        assert stack.state(agent_id) is AgentState.STALE
        event = stack.store.events(agent_id)[0]
        assert event.to_state is AgentState.STALE
        assert event.reason is Reason.ROUND_CRASHED
        assert stack.published[-1].record.kind is RecordKind.WATCHDOG
        stack.source.crash.clear()
        _attested(stack, agent_id)  # a passing round attests it again


def test_a_verdict_that_cannot_be_recorded_renews_nothing(tmp_path: Path, redis_url: str) -> None:
    """The database is locked by someone else: rounds cannot record, so they change nothing and
    the lease runs out (stale, cause record_failed); when the lock goes, rounds record again."""
    with runner_stack(tmp_path, redis_url, commit_timeout=0.5, max_age=1.0) as stack:
        agent_id = _first(stack)
        _attested(stack, agent_id)
        locker = sqlite3.connect(stack.database, timeout=1)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            report = stack.round(agent_id)
            assert report is not None
            assert report.fault is Reason.RECORD_FAILED
            assert stack.hot.faults([agent_id])[agent_id][0] == "record_failed"
        finally:
            time.sleep(1.2)  # past the lease
            locker.rollback()
            locker.close()
        assert stack.expire() == 1
        assert stack.state(agent_id) is AgentState.STALE
        assert stack.store.events(agent_id)[0].reason is Reason.RECORD_FAILED
        _attested(stack, agent_id)
        assert all(e.to_state is not AgentState.FAILED for e in stack.store.events(agent_id))
        _chain_intact(stack, agent_id)


def test_redis_losing_its_data_costs_a_round_not_the_chain(stack: RunnerStack) -> None:
    agent_id = _first(stack)
    for _ in range(3):
        _attested(stack, agent_id)
    stack.hot._redis.flushall()  # a Redis restart without persistence
    refused = stack.round(agent_id)  # its fence counter restarted below what SQL stored
    assert refused is not None
    assert refused.committed is None
    _attested(stack, agent_id)
    assert stack.store.get_agent(agent_id).records == 4
    assert _chain_intact(stack, agent_id) == 4


def test_a_tampered_agent_fails_and_its_webhook_rows_commit_with_it(stack: RunnerStack) -> None:
    agent_id = _first(stack)
    _attested(stack, agent_id)
    stack.sims[agent_id].measure("/tmp/evil", content=b"payload")
    report = stack.round(agent_id)
    assert report is not None
    assert report.committed is not None
    assert report.committed.record.to_state is AgentState.FAILED
    assert len(report.committed.deliveries) == 1  # the outbox row, written with the verdict
    assert report.committed.kept
    assert stack.round(agent_id) is None  # failed agents are not polled


def test_folding_keeps_the_chain_linked(stack: RunnerStack) -> None:
    import datetime as dt

    agent_id = _first(stack)
    for _ in range(6):
        _attested(stack, agent_id)
    folded = stack.records.fold(now=dt.datetime.now(dt.UTC), hot_window=dt.timedelta(0))
    assert folded == 5  # the first round (a transition) is kept, the others fold
    items = stack.records.page(agent_id)
    assert len(items) == 2
    assert isinstance(items[1], FoldSummary)
    assert items[1].outcomes == {"passed": 5}
    _attested(stack, agent_id)
    assert _chain_intact(stack, agent_id) == 7


def test_the_database_refuses_a_fence_at_or_below_the_stored_one(stack: RunnerStack) -> None:
    """The SQL guard alone, without the Redis lock in front of it: a writer whose fence is not
    above the stored one changes nothing."""
    import datetime as dt

    from verifier.core.round_record import RecordOrigin, action_record
    from verifier.storage.verdicts import Committed, Refused, VerdictDraft, VerdictStore

    agent_id = _first(stack)
    verdicts = VerdictStore(stack.store._sessions.kw["bind"])  # the same database

    def draft(fence: int) -> VerdictDraft:
        record = action_record(
            agent_id=agent_id,
            round_id=f"op-{fence}",
            at=dt.datetime.now(dt.UTC),
            kind=RecordKind.OPERATOR,
            origin=RecordOrigin(verifier_id="t"),
            reason=Reason.OPERATOR_PAUSED,
        )
        return VerdictDraft(record=record, fence=fence, decide=lambda _: AgentState.PAUSED)

    assert isinstance(verdicts.commit([draft(5)])[0], Committed)
    for stale_fence in (5, 3):
        refused = verdicts.commit([draft(stale_fence)])[0]
        assert isinstance(refused, Refused)
        assert refused.why == "fence"
    assert stack.store.get_agent(agent_id).records == 1


def test_verdicts_that_gave_up_waiting_for_a_locked_database_never_break_the_chain(
    tmp_path: Path, redis_url: str
) -> None:
    """Rounds whose commit timed out behind a locked database (the fault suite's 10 s lock):
    the draft being written when the lock goes may still commit (a record the round called
    failed), the ones still queued must not, and none may fork or gap the chain. Before the
    fix two queued drafts of one agent shared a transaction, the row moved on and no record
    was written (seq N+2 followed seq N)."""
    with runner_stack(tmp_path, redis_url, commit_timeout=0.3, max_age=30.0) as stack:
        agent_id = _first(stack)
        _attested(stack, agent_id)
        locker = sqlite3.connect(stack.database, timeout=1)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            for _ in range(3):
                report = stack.round(agent_id)
                assert report is not None
                assert report.fault is Reason.RECORD_FAILED
        finally:
            locker.rollback()
            locker.close()
        time.sleep(1.0)  # the writer thread finishes whatever it had started
        _attested(stack, agent_id)
        last = _chain_intact(stack, agent_id)
        assert last in (2, 3), last  # the first record, the late one (maybe), the new one


def test_two_drafts_of_one_agent_in_one_group_commit_as_two_linked_records(
    stack: RunnerStack,
) -> None:
    """``VerdictStore.commit`` given two drafts of the same agent (higher fence second): both
    are recorded in order, linked, and the row names the second."""
    import datetime as dt

    from verifier.core.round_record import RecordOrigin, action_record
    from verifier.storage.verdicts import Committed, VerdictDraft, VerdictStore

    agent_id = _first(stack)
    verdicts = VerdictStore(stack.store._sessions.kw["bind"])

    def draft(fence: int) -> VerdictDraft:
        record = action_record(
            agent_id=agent_id,
            round_id=f"op-{fence}",
            at=dt.datetime.now(dt.UTC),
            kind=RecordKind.OPERATOR,
            origin=RecordOrigin(verifier_id="t"),
            reason=Reason.OPERATOR_PAUSED,
        )
        return VerdictDraft(record=record, fence=fence, decide=lambda _: AgentState.PAUSED)

    results = verdicts.commit([draft(7), draft(9)])
    assert [type(r) for r in results] == [Committed, Committed]
    assert stack.store.get_agent(agent_id).records == 2
    assert _chain_intact(stack, agent_id) == 2


def test_of_two_writers_with_one_fence_the_later_commit_is_refused_not_an_error(
    stack: RunnerStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Sentinel failover can hand one fence to two rounds (the increment never replicated).
    Both read the same chain position; the second to write finds the row moved on and must be
    refused (``fence``), even though the row now holds its own fence and sequence number. Before
    the fix it took the other's update for its own, inserted a duplicate sequence number and
    failed the whole group commit (seen in a parallel CI run of test_redis_failover)."""
    import datetime as dt

    from sqlalchemy import Connection

    from geoattest.db import make_engine
    from verifier.core.round_record import RecordOrigin, action_record
    from verifier.storage import verdicts as verdicts_module
    from verifier.storage.verdict_rows import Chain, read_chain
    from verifier.storage.verdicts import Committed, Refused, VerdictDraft, VerdictStore

    agent_id = _first(stack)
    _attested(stack, agent_id)

    def draft(round_id: str) -> VerdictDraft:
        record = action_record(
            agent_id=agent_id,
            round_id=round_id,
            at=dt.datetime.now(dt.UTC),
            kind=RecordKind.OPERATOR,
            origin=RecordOrigin(verifier_id="t"),
            reason=Reason.OPERATOR_PAUSED,
        )
        return VerdictDraft(record=record, fence=10**6, decide=lambda state: state)  # steady

    first = VerdictStore(stack.store._sessions.kw["bind"])
    second = VerdictStore(make_engine(f"sqlite:///{stack.database}"))  # another worker's pool
    raced: list[object] = []

    def read_then_lose_the_race(connection: Connection, agent_ids: Sequence[str]) -> Chain:
        chain = read_chain(connection, agent_ids)
        if not raced:  # the other writer commits between this read and this write
            raced.append("racing")
            raced[0] = second.commit([draft("second")])[0]
        return chain

    monkeypatch.setattr(verdicts_module, "read_chain", read_then_lose_the_race)
    refused = first.commit([draft("first")])[0]
    assert isinstance(raced[0], Committed)
    assert isinstance(refused, Refused), refused
    assert refused.why == "fence"
    assert stack.store.get_agent(agent_id).records == 2  # the attested round's and the winner's
    assert _chain_intact(stack, agent_id) == 2
