"""Group commit: the verdicts of a worker process's concurrent rounds share SQL transactions.

Rounds finish on many threads; committing each alone would cost a transaction per round (and on
SQLite, writers queue for one file lock). One writer thread per process takes whatever verdicts
are waiting and commits them together, so under load a transaction carries many rounds and
when idle a round waits for nobody. A round waits for its own result at most ``timeout``.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future

from verifier.storage.verdicts import CommitResult, VerdictDraft, VerdictStore

log = logging.getLogger(__name__)

MAX_GROUP = 256


class GroupCommitter:
    def __init__(self, store: VerdictStore) -> None:
        self._store = store
        self._queue: queue.SimpleQueue[tuple[VerdictDraft, Future[CommitResult]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._loop, name="verdict-writer", daemon=True)
        self._thread.start()

    def submit(self, draft: VerdictDraft) -> Future[CommitResult]:
        future: Future[CommitResult] = Future()
        self._queue.put((draft, future))
        return future

    def commit(self, draft: VerdictDraft, *, timeout: float) -> CommitResult:
        """Submit and wait; raises the database's error, or ``TimeoutError``.

        On a timeout the draft is withdrawn when its transaction has not started (it will never
        commit: the caller may say nothing was recorded). One already being written is waited
        for once more; if that times out too, it may still commit later, and the chain stays
        linked either way (``VerdictStore.commit`` chains or fences every draft it is given)."""
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

    def _commit(self, group: Sequence[tuple[VerdictDraft, Future[CommitResult]]]) -> None:
        # Drafts withdrawn by a caller that stopped waiting are dropped; the others can no
        # longer be withdrawn from here on.
        group = [
            (draft, future) for draft, future in group if future.set_running_or_notify_cancel()
        ]
        if not group:
            return
        try:
            results = self._store.commit([draft for draft, _ in group])
        except Exception as e:  # the database failed: every round of the group learns it
            log.warning("verdict commit of %d round(s) failed: %s", len(group), e)
            for _, future in group:
                future.set_exception(e)
            return
        for (_, future), result in zip(group, results, strict=True):
            future.set_result(result)
