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

``submit`` hands a draft on without waiting at all: the writer calls the caller's ``then`` with
the result (or the error) once the draft's group committed. A worker's scheduled rounds finish
that way (``RoundRunner.start``), so no round thread blocks on a commit and wakes again: that
wait and the convoy of blocked threads were about half of what recording cost a round (ADR 23).
Since only a writer that is free would withdraw a submitted draft past its deadline, a reaper
thread does it too: a writer stuck in a transaction (or in a follow-up) does not leave the
drafts queued behind it unanswered. A writer killed by an error that is not an ``Exception``
answers its group and everything queued with that error, and the committer refuses what comes
after, so no submitted draft is ever left without an answer.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

MAX_GROUP = 256
LINGER = 0.002  # seconds a busy writer waits for more drafts before it commits a group
REAP_EVERY = 0.25  # seconds between the reaper's passes over drafts submitted without waiting

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
    """One draft on its way: the writer fills in ``result`` or ``error`` and releases ``done``,
    or, for a submitted draft, calls ``then`` with either."""

    __slots__ = (
        "answered",
        "deadline",
        "done",
        "draft",
        "error",
        "has_result",
        "result",
        "state",
        "then",
    )

    def __init__(
        self,
        draft: D,
        then: Callable[[R | BaseException], None] | None = None,
        deadline: float = 0.0,
    ) -> None:
        self.draft = draft
        self.then = then
        self.deadline = deadline  # a submitted draft not taken by then is never committed
        self.done = threading.Lock()
        self.done.acquire()  # held until the writer has an answer
        self.state = _WAITING
        self.result: R | None = None
        self.has_result = False
        self.error: BaseException | None = None
        self.answered = False  # set (under the committer's claim lock) by whoever answers it

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
        self._counts = threading.Lock()  # guards the two counters below and ``_closed``
        self._submitted = 0
        self._answered = 0
        self._closed = False
        # Submitted drafts in submission order, for the reaper (it drops the answered ones).
        self._in_flight: deque[_Slot[D, R]] = deque()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()
        self._reaper = threading.Thread(target=self._reap_loop, name=f"{name}-reaper", daemon=True)
        self._reaper.start()

    def commit(self, draft: D, *, timeout: float) -> R:
        """Submit and wait; raises the database's error, or ``TimeoutError``.

        On a timeout the draft is withdrawn when its transaction has not started (it will never
        commit: the caller may say nothing was recorded). One already being written is waited
        for once more; if that times out too, it may still commit later (for verdicts the chain
        stays linked either way: ``VerdictStore.commit`` chains or fences every draft it is
        given; a token committed that late is stored but never handed out)."""
        slot: _Slot[D, R] = _Slot(draft)
        with self._counts:
            if self._closed:
                raise RuntimeError("the committer is closed (or its writer stopped)")
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

    def submit(
        self, draft: D, then: Callable[[R | BaseException], None], *, timeout: float
    ) -> None:
        """Hand ``draft`` on and return at once. The writer thread calls ``then`` exactly once:
        with the result after the draft's group committed, with the database's error, or with
        ``TimeoutError`` when the draft was still queued ``timeout`` seconds after this call
        (then it was never committed). After ``close`` it is called at once, on this thread,
        with ``RuntimeError``. ``then`` runs on the writer (or, for a draft withdrawn while the
        writer is busy, on the reaper): it must be short and not raise."""
        with self._counts:
            closed = self._closed
            if not closed:
                self._submitted += 1
                slot: _Slot[D, R] = _Slot(draft, then, time.monotonic() + timeout)
                self._in_flight.append(slot)
                self._queue.put(slot)
        if closed:
            then(RuntimeError("the committer is closed (or its writer stopped)"))

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every submitted draft has been answered; False if some were not within
        ``timeout`` seconds (benchmarks and tests: a worker never needs to wait)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._counts:
                if self._answered == self._submitted:
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.0005)

    def close(self) -> None:
        """Commit what is queued, answer it, and stop the writer."""
        with self._counts:
            self._closed = True
            self._queue.put(None)
        self._thread.join(timeout=10)
        self._stopped.set()
        self._reaper.join(timeout=10)

    def _loop(self) -> None:
        busy = False
        group: list[_Slot[D, R]] = []
        try:
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
        except BaseException as e:  # not an Exception (those are answered in _commit): we end
            log.critical("the group committer's writer stopped: %r", e, exc_info=True)
            self._stop_answering(group, e)

    def _stop_answering(self, group: Sequence[_Slot[D, R]], error: BaseException) -> None:
        """The writer is dying: refuse new drafts, and answer its group and the queue."""
        with self._counts:
            self._closed = True
        left = list(group)
        while True:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                break
            if more is not None:
                left.append(more)
        stopped = RuntimeError(f"the committer's writer stopped: {error!r}")
        for slot in left:
            self._answer(slot, stopped)

    def _reap_loop(self) -> None:
        while not self._stopped.wait(REAP_EVERY):
            try:
                self._reap(time.monotonic())
            except Exception:  # keep reaping: a broken pass must not end the thread
                log.exception("the group committer's reaper failed a pass")

    def _reap(self, now: float) -> None:
        """Withdraw and answer submitted drafts still queued past their deadline, in submission
        order (a draft behind one that is still in time waits for the next pass, or for the
        writer, which withdraws it too)."""
        expired: list[_Slot[D, R]] = []
        with self._claim:
            while self._in_flight:
                slot = self._in_flight[0]
                if slot.state == _WAITING:
                    if now <= slot.deadline:
                        break
                    slot.state = _WITHDRAWN
                    expired.append(slot)
                self._in_flight.popleft()
        for slot in expired:
            self._answer(slot, TimeoutError("the draft was not committed in time (withdrawn)"))

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
        now = time.monotonic()
        expired: list[_Slot[D, R]] = []
        with self._claim:
            taken = []
            for slot in group:
                if slot.state != _WAITING:
                    continue
                if slot.then is not None and now > slot.deadline:
                    slot.state = _WITHDRAWN
                    expired.append(slot)
                else:
                    slot.state = _TAKEN
                    taken.append(slot)
        for slot in expired:
            self._answer(slot, TimeoutError("the draft was not committed in time (withdrawn)"))
        if not taken:
            return
        try:
            results = self._store.commit([slot.draft for slot in taken])
        except Exception as e:  # the database failed: every draft of the group learns it
            log.warning("group commit of %d draft(s) failed: %s", len(taken), e)
            for slot in taken:
                self._answer(slot, e)
            return
        for slot, result in zip(taken, results, strict=True):
            self._answer(slot, result)

    def _answer(self, slot: _Slot[D, R], outcome: R | BaseException) -> None:
        with self._claim:  # the writer, the reaper and a dying writer may all reach a slot
            if slot.answered:
                return
            slot.answered = True
        then = slot.then
        if then is None:  # a caller of ``commit`` is waiting
            if isinstance(outcome, BaseException):
                slot.error = outcome
            else:
                slot.result = outcome
                slot.has_result = True
            slot.done.release()
            return
        try:
            then(outcome)
        except Exception:  # a broken callback must not stop the writer
            log.exception("a committed draft's follow-up failed")
        with self._counts:
            self._answered += 1
