"""Group commit: drafts submitted by many threads of one process share SQL transactions.

Verdicts of a worker process's concurrent rounds (``VerdictStore.commit``) and tokens of an API
process's concurrent requests (``TokenLedger.store_many``) finish on many threads; committing
each alone would cost a transaction apiece (and on SQLite, writers queue for one file lock). One
writer thread per committer takes whatever drafts are waiting and hands them to the store's
``commit`` together, so under load a transaction carries many drafts and when idle a draft waits
for nobody. A caller waits for its own result at most ``timeout``.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

MAX_GROUP = 256

D = TypeVar("D")
R = TypeVar("R")
D_contra = TypeVar("D_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)


class BatchStore(Protocol[D_contra, R_co]):
    def commit(self, drafts: Sequence[D_contra]) -> Sequence[R_co]:
        """One transaction for ``drafts``: one result per draft, in order; raises (nothing
        committed) when the database fails."""
        ...


class GroupCommitter(Generic[D, R]):
    def __init__(self, store: BatchStore[D, R], *, name: str = "verdict-writer") -> None:
        self._store = store
        self._queue: queue.SimpleQueue[tuple[D, Future[R]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, draft: D) -> Future[R]:
        future: Future[R] = Future()
        self._queue.put((draft, future))
        return future

    def commit(self, draft: D, *, timeout: float) -> R:
        """Submit and wait; raises the database's error, or ``TimeoutError``.

        On a timeout the draft is withdrawn when its transaction has not started (it will never
        commit: the caller may say nothing was recorded). One already being written is waited
        for once more; if that times out too, it may still commit later (for verdicts the chain
        stays linked either way: ``VerdictStore.commit`` chains or fences every draft it is
        given; a token committed that late is stored but never handed out)."""
        future = self.submit(draft)
        try:
            return future.result(timeout=timeout)
        except TimeoutError:
            if future.cancel():
                raise
        return future.result(timeout=timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            group = [item]
            while len(group) < MAX_GROUP:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # stop after this group
                    break
                group.append(more)
            self._commit(group)

    def _commit(self, group: Sequence[tuple[D, Future[R]]]) -> None:
        # Drafts withdrawn by a caller that stopped waiting are dropped; the others can no
        # longer be withdrawn from here on.
        group = [
            (draft, future) for draft, future in group if future.set_running_or_notify_cancel()
        ]
        if not group:
            return
        try:
            results = self._store.commit([draft for draft, _ in group])
        except Exception as e:  # the database failed: every draft of the group learns it
            log.warning("group commit of %d draft(s) failed: %s", len(group), e)
            for _, future in group:
                future.set_exception(e)
            return
        for (_, future), result in zip(group, results, strict=True):
            future.set_result(result)
