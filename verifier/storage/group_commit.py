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
        """Submit and wait; raises the database's error, or ``TimeoutError``."""
        return self.submit(draft).result(timeout=timeout)

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
        try:
            results = self._store.commit([draft for draft, _ in group])
        except Exception as e:  # the database failed: every round of the group learns it
            log.warning("verdict commit of %d round(s) failed: %s", len(group), e)
            for _, future in group:
                if not future.cancelled():
                    future.set_exception(e)
            return
        for (_, future), result in zip(group, results, strict=True):
            if not future.cancelled():
                future.set_result(result)
