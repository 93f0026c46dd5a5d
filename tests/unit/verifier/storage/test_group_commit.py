"""Group commit's hand-off: groups, withdrawal on timeout, errors reaching every waiter, and
drafts submitted without waiting (answered on the writer).

The store here is a stand-in for ``VerdictStore`` that records the groups it is given (the SQL
side is tested on real SQLite and PostgreSQL in the integration suites)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from verifier.core.reasons import Reason
from verifier.core.record_types import RecordKind
from verifier.core.round_record import RecordOrigin, action_record
from verifier.storage.group_commit import GroupCommitter
from verifier.storage.verdicts import CommitResult, Refused, VerdictDraft, VerdictStore


def _draft(agent_id: str) -> VerdictDraft:
    record = action_record(
        agent_id=agent_id,
        round_id=f"round-{agent_id}",
        at=datetime(2026, 12, 2, tzinfo=UTC),
        kind=RecordKind.OPERATOR,
        origin=RecordOrigin(verifier_id="test"),
        reason=Reason.LEASE_EXPIRED,
    )
    return VerdictDraft(record=record, fence=1, decide=lambda state: state)


class _Store(VerdictStore):
    """Answers each draft with a result naming its agent; can be held or made to fail."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()
        self.error: BaseException | None = None

    def commit(self, drafts: Sequence[VerdictDraft]) -> list[CommitResult]:
        self.entered.set()
        self.release.wait(10)
        self.groups.append([d.record.agent_id for d in drafts])
        if self.error is not None:
            raise self.error
        return [Refused(why="missing", stored_fence=int(d.record.agent_id)) for d in drafts]


def test_each_round_gets_its_own_result_and_busy_rounds_share_groups() -> None:
    store = _Store()
    store.release.clear()  # the first transaction waits while the other rounds arrive
    threading.Timer(0.3, store.release.set).start()
    committer = GroupCommitter(store)
    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(
                pool.map(lambda n: committer.commit(_draft(str(n)), timeout=5), range(40))
            )
    finally:
        committer.close()
    assert [r.stored_fence for r in results if isinstance(r, Refused)] == list(range(40))
    assert sorted(int(a) for group in store.groups for a in group) == list(range(40))
    assert len(store.groups) < 40  # some rounds shared a transaction


def test_a_draft_whose_transaction_has_not_started_is_withdrawn_on_timeout() -> None:
    store = _Store()
    store.release.clear()  # the writer is stuck in a first transaction
    committer = GroupCommitter(store)
    try:
        first = threading.Thread(target=lambda: committer.commit(_draft("1"), timeout=10))
        first.start()
        assert store.entered.wait(5)
        with pytest.raises(TimeoutError, match="withdrawn"):
            committer.commit(_draft("2"), timeout=0.05)
        store.release.set()
        first.join(5)
        assert committer.commit(_draft("3"), timeout=5) == Refused(why="missing", stored_fence=3)
    finally:
        committer.close()
    assert all("2" not in group for group in store.groups)  # never committed


def test_a_database_error_reaches_every_round_of_the_group() -> None:
    store = _Store()
    store.error = RuntimeError("database is locked")
    committer = GroupCommitter(store)
    try:
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(committer.commit, _draft(str(n)), timeout=5) for n in range(4)]
            for future in futures:
                with pytest.raises(RuntimeError, match="locked"):
                    future.result()
    finally:
        committer.close()


class _Answers:
    """Collects what ``submit``'s follow-up was called with, from the writer thread."""

    def __init__(self) -> None:
        self.got: dict[str, CommitResult | BaseException] = {}
        self.threads: set[str] = set()

    def then(self, agent_id: str) -> Callable[[CommitResult | BaseException], None]:
        def answer(outcome: CommitResult | BaseException) -> None:
            self.got[agent_id] = outcome
            self.threads.add(threading.current_thread().name)

        return answer


def test_submitted_drafts_are_committed_and_answered_on_the_writer_without_waiting() -> None:
    store = _Store()
    answers = _Answers()
    committer = GroupCommitter(store, name="the-writer")
    try:
        for n in range(30):
            committer.submit(_draft(str(n)), answers.then(str(n)), timeout=5)
        assert committer.wait_idle(5)
    finally:
        committer.close()
    assert answers.got == {str(n): Refused(why="missing", stored_fence=n) for n in range(30)}
    assert answers.threads == {"the-writer"}
    assert sorted(int(a) for group in store.groups for a in group) == list(range(30))


def test_a_submitted_draft_still_queued_after_its_timeout_is_never_committed() -> None:
    store = _Store()
    store.release.clear()  # the writer is stuck in a first transaction
    answers = _Answers()
    committer = GroupCommitter(store)
    try:
        committer.submit(_draft("1"), answers.then("1"), timeout=10)
        assert store.entered.wait(5)
        committer.submit(_draft("2"), answers.then("2"), timeout=0.05)
        committer.submit(_draft("3"), answers.then("3"), timeout=10)
        time.sleep(0.2)  # "2" is past its deadline before the writer can take it
        store.release.set()
        assert committer.wait_idle(5)
    finally:
        committer.close()
    late = answers.got["2"]
    assert isinstance(late, TimeoutError)
    assert "withdrawn" in str(late)
    assert answers.got["3"] == Refused(why="missing", stored_fence=3)
    assert all("2" not in group for group in store.groups)


def test_a_database_error_reaches_every_submitted_draft_and_the_writer_goes_on() -> None:
    store = _Store()
    store.error = RuntimeError("database is locked")
    answers = _Answers()
    committer = GroupCommitter(store)
    try:
        for n in range(3):
            committer.submit(_draft(str(n)), answers.then(str(n)), timeout=5)
        assert committer.wait_idle(5)
        store.error = None
        committer.submit(_draft("7"), answers.then("7"), timeout=5)
        assert committer.wait_idle(5)
    finally:
        committer.close()
    assert all(isinstance(answers.got[str(n)], RuntimeError) for n in range(3))
    assert answers.got["7"] == Refused(why="missing", stored_fence=7)


def test_a_follow_up_that_raises_does_not_stop_the_writer() -> None:
    store = _Store()
    answers = _Answers()

    def broken(_outcome: CommitResult | BaseException) -> None:
        raise ValueError("a bug in the follow-up")

    committer = GroupCommitter(store)
    try:
        committer.submit(_draft("1"), broken, timeout=5)
        committer.submit(_draft("2"), answers.then("2"), timeout=5)
        assert committer.wait_idle(5)
    finally:
        committer.close()
    assert answers.got["2"] == Refused(why="missing", stored_fence=2)


def test_close_answers_what_is_queued_and_refuses_what_comes_after() -> None:
    store = _Store()
    store.release.clear()
    answers = _Answers()
    committer = GroupCommitter(store)
    committer.submit(_draft("1"), answers.then("1"), timeout=10)
    assert store.entered.wait(5)
    committer.submit(_draft("2"), answers.then("2"), timeout=10)
    closing = threading.Thread(target=committer.close)
    closing.start()
    store.release.set()
    closing.join(10)
    assert answers.got == {
        "1": Refused(why="missing", stored_fence=1),
        "2": Refused(why="missing", stored_fence=2),
    }
    committer.submit(_draft("3"), answers.then("3"), timeout=10)
    after = answers.got["3"]
    assert isinstance(after, RuntimeError)
    assert "closed" in str(after)


def test_a_draft_queued_behind_a_stuck_writer_is_answered_at_its_deadline() -> None:
    """The writer hangs in a transaction (a database that never answers): the drafts queued
    behind it are withdrawn and answered by the reaper when their time is up, not when (or if)
    the writer comes back."""
    store = _Store()
    store.release.clear()
    answers = _Answers()
    committer = GroupCommitter(store)
    try:
        committer.submit(_draft("1"), answers.then("1"), timeout=10)
        assert store.entered.wait(5)
        committer.submit(_draft("2"), answers.then("2"), timeout=0.1)
        deadline = time.monotonic() + 5
        while "2" not in answers.got and time.monotonic() < deadline:
            time.sleep(0.01)
        late = answers.got.get("2")
        assert isinstance(late, TimeoutError), "the stuck writer's queue was never answered"
        assert "1" not in answers.got  # the writer is still stuck
    finally:
        store.release.set()
        committer.close()
    assert all("2" not in group for group in store.groups)


class _WriterKilled(BaseException):
    """What no ``except Exception`` catches (an eventlet timeout, a ``SystemExit``)."""


def test_a_writer_killed_by_a_base_exception_answers_everything_and_refuses_more() -> None:
    store = _Store()
    store.release.clear()
    store.error = _WriterKilled()
    answers = _Answers()
    committer = GroupCommitter(store)
    try:
        committer.submit(_draft("1"), answers.then("1"), timeout=10)
        assert store.entered.wait(5)
        committer.submit(_draft("2"), answers.then("2"), timeout=10)  # queued behind it
        store.release.set()  # the writer dies in the first group
        committer._thread.join(5)
        assert not committer._thread.is_alive()
        committer.submit(_draft("3"), answers.then("3"), timeout=10)  # after its death
        assert committer.wait_idle(2)
        with pytest.raises(RuntimeError, match="closed"):
            committer.commit(_draft("4"), timeout=1)
    finally:
        committer.close()
    for agent_id in ("1", "2", "3"):
        answer = answers.got[agent_id]
        assert isinstance(answer, RuntimeError), agent_id
    assert "writer stopped" in str(answers.got["1"])
    assert "writer stopped" in str(answers.got["2"])
