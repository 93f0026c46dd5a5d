"""Group commit: drafts submitted by many threads of one process share SQL transactions.

Verdicts of a worker process's concurrent rounds (``VerdictStore.commit``) and tokens of an API
process's concurrent requests (``TokenLedger.store_many``) finish on many threads; committing
each alone would cost a transaction apiece (and on SQLite, writers queue for one file lock). One
writer thread per committer takes whatever drafts are waiting and hands them to the store's
``commit`` together, so under load a transaction carries many drafts. When drafts arrive
together (the previous group held more than one, or another is already queued), the writer
waits ``linger`` seconds for more before it commits: fewer, larger transactions
(docs/benchmarks.md, evidence records). A lone draft on an idle process waits for nobody. A
caller waits for its own result at most ``timeout``; its draft is committed (durable) before
``commit`` returns, and never after it raised.

The hand-off is a plain lock per draft rather than a ``concurrent.futures.Future``: a Future's
condition variable is pure Python, and at one per round its notify and wait were a tenth of
the recording cost.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

MAX_GROUP = 256
LINGER = 0.002  # seconds a busy writer waits for more drafts before it commits a group

D = TypeVar("D")
R = TypeVar("R")
D_contra = TypeVar("D_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)

_WAITING, _TAKEN, _WITHDRAWN = 0, 1, 2


class BatchStore(Protocol[D_contra, R_co]):
    def commit(self, drafts: Sequence[D_contra]) -> Sequence[R_co]:
        """One transaction for ``drafts``: one result per draft, in order; raises (nothing
        committed) when the database fails."""
        ...


class _Slot(Generic[D, R]):
    """One draft on its way: the writer fills in ``result`` or ``error`` and releases ``done``."""

    __slots__ = ("done", "draft", "error", "has_result", "result", "state")

    def __init__(self, draft: D) -> None:
        self.draft = draft
        self.done = threading.Lock()
        self.done.acquire()  # held until the writer has an answer
        self.state = _WAITING
        self.result: R | None = None
        self.has_result = False
        self.error: BaseException | None = None

    def answer(self) -> R:
        if self.error is not None:
            raise self.error
        assert self.has_result  # noqa: S101  # set before ``done`` is released
        return self.result  # type: ignore[return-value]  # R itself may include None


class GroupCommitter(Generic[D, R]):
    def __init__(
        self,
        store: BatchStore[D, R],
        *,
        name: str = "verdict-writer",
        linger: float = LINGER,
    ) -> None:
        self._store = store
        self._linger = linger
        self._queue: queue.SimpleQueue[_Slot[D, R] | None] = queue.SimpleQueue()
        self._claim = threading.Lock()  # guards each slot's ``state``
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def commit(self, draft: D, *, timeout: float) -> R:
        """Submit and wait; raises the database's error, or ``TimeoutError``.

        On a timeout the draft is withdrawn when its transaction has not started (it will never
        commit: the caller may say nothing was recorded). One already being written is waited
        for once more; if that times out too, it may still commit later (for verdicts the chain
        stays linked either way: ``VerdictStore.commit`` chains or fences every draft it is
        given; a token committed that late is stored but never handed out)."""
        slot: _Slot[D, R] = _Slot(draft)
        self._queue.put(slot)
        if slot.done.acquire(timeout=timeout):
            return slot.answer()
        with self._claim:
            if slot.state == _WAITING:
                slot.state = _WITHDRAWN
                raise TimeoutError("the draft was not committed in time (withdrawn)")
        if slot.done.acquire(timeout=timeout):
            return slot.answer()
        raise TimeoutError("the draft's transaction did not finish in time")

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        busy = False
        while True:
            item = self._queue.get()
            if item is None:
                return
            group = [item]
            if self._linger > 0 and (busy or not self._queue.empty()):
                time.sleep(self._linger)  # let the other drafts in flight catch up
            stop = self._drain(group)
            busy = len(group) > 1
            self._commit(group)
            if stop:
                return

    def _drain(self, group: list[_Slot[D, R]]) -> bool:
        """Add what is waiting to ``group``; True when ``close`` was called."""
        while len(group) < MAX_GROUP:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                return False
            if more is None:
                return True
            group.append(more)
        return False

    def _commit(self, group: Sequence[_Slot[D, R]]) -> None:
        # Drafts withdrawn by a caller that stopped waiting are dropped; the others can no
        # longer be withdrawn from here on.
        with self._claim:
            taken = [slot for slot in group if slot.state == _WAITING]
            for slot in taken:
                slot.state = _TAKEN
        if not taken:
            return
        try:
            results = self._store.commit([slot.draft for slot in taken])
        except Exception as e:  # the database failed: every draft of the group learns it
            log.warning("group commit of %d draft(s) failed: %s", len(taken), e)
            for slot in taken:
                slot.error = e
                slot.done.release()
            return
        for slot, result in zip(taken, results, strict=True):
            slot.result = result
            slot.has_result = True
            slot.done.release()
