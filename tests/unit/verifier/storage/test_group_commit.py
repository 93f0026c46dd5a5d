"""The one batching writer (``GroupCommitter``): drafts waiting together share one commit, a
failed commit reaches every caller of its group, a caller that gave up before its transaction
started is withdrawn."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from verifier.storage.group_commit import GroupCommitter


class _GatedStore:
    """Commits block until ``gate`` is set, so drafts pile up behind the first one."""

    def __init__(self, fail: bool = False) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()
        self.batches: list[list[int]] = []
        self.fail = fail

    def commit(self, drafts: Sequence[int]) -> list[int]:
        self.started.set()
        self.gate.wait(5)
        self.batches.append(list(drafts))
        if self.fail:
            raise OSError("disk I/O error")
        return [d * 10 for d in drafts]


def test_drafts_waiting_together_share_one_commit_and_get_their_own_result() -> None:
    store = _GatedStore()
    writer: GroupCommitter[int, int] = GroupCommitter(store, name="test-writer")
    try:
        first = writer.submit(1)
        assert store.started.wait(5)
        rest = [writer.submit(n) for n in (2, 3, 4)]
        store.gate.set()
        assert first.result(5) == 10
        assert [f.result(5) for f in rest] == [20, 30, 40]
        assert store.batches == [[1], [2, 3, 4]]
    finally:
        store.gate.set()
        writer.close()


def test_a_failed_commit_reaches_every_caller_of_its_group() -> None:
    store = _GatedStore(fail=True)
    writer: GroupCommitter[int, int] = GroupCommitter(store, name="test-writer")
    try:
        first = writer.submit(1)
        assert store.started.wait(5)
        second = writer.submit(2)
        store.gate.set()
        for future in (first, second):
            with pytest.raises(OSError, match="disk I/O error"):
                future.result(5)
    finally:
        store.gate.set()
        writer.close()


def test_a_caller_that_gave_up_before_its_transaction_is_withdrawn() -> None:
    store = _GatedStore()
    writer: GroupCommitter[int, int] = GroupCommitter(store, name="test-writer")
    try:
        writer.submit(1)
        assert store.started.wait(5)
        with pytest.raises(TimeoutError):
            writer.commit(2, timeout=0.05)  # queued behind the blocked commit: withdrawn
        store.gate.set()
        assert writer.commit(3, timeout=5) == 30
        assert [2] not in store.batches
        assert all(2 not in batch for batch in store.batches)
    finally:
        store.gate.set()
        writer.close()
