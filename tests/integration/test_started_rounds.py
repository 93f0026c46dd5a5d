"""Rounds that hand their verdict on (``RoundRunner.start``, what ``run_batch`` runs, ADR 23):
the round thread judges and returns, the committer's writer commits the verdict with its group
and then finishes the round (hot state, schedule, lock, publication). On a real Redis and a
real SQLite file: the agent's lock is held until its verdict is committed, and a verdict that
could not be recorded, or waited too long, or a round that outlived its lock, renews nothing."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.support.runner_stack import RunnerStack, runner_stack
from verifier.core.reasons import Reason
from verifier.core.states import AgentState
from verifier.storage.verdicts import CommitResult, VerdictDraft, VerdictStore

pytestmark = pytest.mark.redis


@pytest.fixture
def stack(tmp_path: Path, redis_url: str) -> Iterator[RunnerStack]:
    with runner_stack(tmp_path, redis_url) as running:
        yield running


def _start_all(stack: RunnerStack) -> None:
    for agent_id in stack.sims:
        assert stack.runner.start(stack.target(agent_id))
    assert stack.committer.wait_idle(10)


def test_started_rounds_are_committed_finished_and_rescheduled(stack: RunnerStack) -> None:
    _start_all(stack)  # registered -> attested
    before = {agent_id: stack.store.get_agent(agent_id) for agent_id in stack.sims}
    time.sleep(0.01)
    _start_all(stack)
    for agent_id in stack.sims:
        view = stack.store.get_agent(agent_id)
        assert view.state is AgentState.ATTESTED
        assert view.records == before[agent_id].records + 1 == 2
        renewed, earlier = view.last_passed_at, before[agent_id].last_passed_at
        assert renewed is not None
        assert earlier is not None
        assert renewed > earlier  # the lease renewed
        status = stack.hot.load(agent_id)
        due = stack.hot.due_of(agent_id)
        assert status is not None
        assert status.last_round_at is not None
        assert due == pytest.approx(status.last_round_at + stack.cadence.interval)
    assert len(stack.published) == 2 * len(stack.sims)
    assert stack.round(next(iter(stack.sims))) is not None  # every lock was released


def _hold_commits(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Make every group commit wait (for up to 10 s) until the second event is set; the first
    is set once the writer is inside a commit."""
    entered, release = threading.Event(), threading.Event()
    commit = VerdictStore.commit

    def held(self: VerdictStore, drafts: Sequence[VerdictDraft]) -> list[CommitResult]:
        entered.set()
        release.wait(10)
        return commit(self, drafts)

    monkeypatch.setattr(VerdictStore, "commit", held)
    return entered, release


def test_the_lock_is_held_until_the_verdict_is_committed(
    stack: RunnerStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent_id = next(iter(stack.sims))
    assert stack.round(agent_id) is not None
    records = stack.store.get_agent(agent_id).records
    entered, release = _hold_commits(monkeypatch)
    assert stack.runner.start(stack.target(agent_id))  # returns with its verdict in flight
    assert entered.wait(5)
    assert stack.runner.start(stack.target(agent_id)) is False  # the agent is still locked
    assert stack.round(agent_id) is None
    assert stack.store.get_agent(agent_id).records == records
    release.set()
    assert stack.committer.wait_idle(10)
    assert stack.store.get_agent(agent_id).records == records + 1
    assert stack.round(agent_id) is not None  # finished: unlocked


def test_a_started_verdict_that_cannot_be_recorded_renews_nothing(
    stack: RunnerStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database refuses the group's transaction (what SQLite says once its busy timeout is
    up, or PostgreSQL when it ends the connection; the real lock, waited out by a round that
    waits for its commit, is in test_round_runner): nothing is renewed, the fault is named."""
    agent_id = next(iter(stack.sims))
    assert stack.round(agent_id) is not None
    before = stack.store.get_agent(agent_id)

    def refused(_self: VerdictStore, _drafts: Sequence[VerdictDraft]) -> list[CommitResult]:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(VerdictStore, "commit", refused)
    assert stack.runner.start(stack.target(agent_id))
    assert stack.committer.wait_idle(10)
    monkeypatch.undo()
    after = stack.store.get_agent(agent_id)
    assert after.records == before.records
    assert after.last_passed_at == before.last_passed_at
    assert stack.hot.faults([agent_id])[agent_id][0] == Reason.RECORD_FAILED.value
    assert stack.hot.due_of(agent_id) is not None  # retried at the normal cadence
    assert stack.round(agent_id) is not None  # the lock was released


def test_a_started_verdict_that_waited_past_its_timeout_is_withdrawn(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with runner_stack(tmp_path, redis_url, agents=2, commit_timeout=0.2) as stack:
        first, second = list(stack.sims)
        for agent_id in (first, second):
            assert stack.round(agent_id) is not None
        records = stack.store.get_agent(second).records
        entered, release = _hold_commits(monkeypatch)
        assert stack.runner.start(stack.target(first))
        assert entered.wait(5)  # the writer is stuck in the first agent's transaction
        assert stack.runner.start(stack.target(second))
        time.sleep(0.4)  # the second verdict's 0.2 s are up while it waits in the queue
        release.set()
        assert stack.committer.wait_idle(10)
        assert stack.store.get_agent(second).records == records  # never committed
        assert stack.hot.faults([second])[second][0] == "record_failed"
        assert first not in stack.hot.faults([first])


def test_a_started_round_that_outlived_its_lock_commits_nothing(
    tmp_path: Path, redis_url: str
) -> None:
    with runner_stack(tmp_path, redis_url, lock_ttl=0.3) as stack:
        agent_id = next(iter(stack.sims))
        assert stack.round(agent_id) is not None
        before = stack.store.get_agent(agent_id)
        stack.source.stall[agent_id] = 0.6  # the round outlives its 0.3 s lock
        assert stack.runner.start(stack.target(agent_id))
        assert stack.committer.wait_idle(10)
        after = stack.store.get_agent(agent_id)
        assert after.records == before.records
        assert after.last_passed_at == before.last_passed_at
        assert stack.hot.faults([agent_id])[agent_id][0] == Reason.LOCK_LOST.value


def test_a_crash_while_finishing_on_the_writer_is_a_named_fault(
    stack: RunnerStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent_id = next(iter(stack.sims))
    assert stack.round(agent_id) is not None

    def broken(*_args: object, **_kwargs: object) -> bool:
        raise ValueError("a bug after the commit")

    monkeypatch.setattr(stack.hot, "finish_round", broken)
    assert stack.runner.start(stack.target(agent_id))
    assert stack.committer.wait_idle(10)
    assert stack.hot.faults([agent_id])[agent_id][0] == Reason.ROUND_CRASHED.value
    monkeypatch.undo()
    assert stack.round(agent_id) is not None  # the crash released the lock
