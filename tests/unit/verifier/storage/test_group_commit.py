"""Group commit's hand-off: groups, withdrawal on timeout, errors reaching every waiter.

The store here is a stand-in for ``VerdictStore`` that records the groups it is given (the SQL
side is tested on real SQLite and PostgreSQL in the integration suites)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from verifier.core.reasons import Reason
from verifier.core.record import RecordKind
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
        self.error: Exception | None = None

    def commit(self, drafts: Sequence[VerdictDraft]) -> list[CommitResult]:
        self.entered.set()
        self.release.wait(10)
        self.groups.append([d.record.agent_id for d in drafts])
        if self.error is not None:
            raise self.error
        return [Refused(why="missing", stored_fence=int(d.record.agent_id)) for d in drafts]


def test_each_round_gets_its_own_result_and_busy_rounds_share_groups() -> None:
    store = _Store()
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
