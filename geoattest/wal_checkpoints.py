"""SQLite WAL checkpoints off the commit path, for the long-running services.

By default SQLite checkpoints inside the ``COMMIT`` that takes the write-ahead log past 1,000
pages: that one commit copies ~4 MB into the database file and syncs it, and whoever waits for
it (a token request, a round's verdict) waits 4-5 ms more. Measured on the token path that was
the whole serial p99 (6.0-7.2 ms with it, 2.7-3.6 ms without; ADR 22).

A ``WalCheckpointer`` runs ``PRAGMA wal_checkpoint(PASSIVE)`` every ``every`` seconds from a
daemon thread on a connection of its own, so commits only append. PASSIVE never blocks a writer
or a reader; the thread's SQLite calls run without the interpreter lock. The engine's own
connections keep an automatic checkpoint as a backstop (``BACKSTOP_PAGES``), which fires only
when the thread falls that far behind or is gone, so the log cannot grow without bound.

One thread per engine and process: it starts on the engine's first connection in a process,
and stops when the engine is disposed or garbage-collected. Services make their engines after
they fork (the pre-forked API's children, Celery's pool processes each build their own), as
SQLite asks. Should a child inherit one anyway, a fork waits for a checkpoint in progress (so no
SQLite lock is copied mid-call) and the child starts a thread of its own on its first connection.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import weakref
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Engine, event

__all__ = ["BACKSTOP_PAGES", "CHECKPOINT_SECONDS", "WalCheckpointer", "checkpoint_in_background"]

log = logging.getLogger(__name__)

CHECKPOINT_SECONDS = 0.25
# 10x SQLite's default: the thread keeps the log far below it (a busy token API writes about
# 7,000 pages a second, an estimate in ADR 22), so it is a backstop, not a schedule.
BACKSTOP_PAGES = 10_000
BUSY_TIMEOUT_SECONDS = 5.0

_LIVE: weakref.WeakSet[WalCheckpointer] = weakref.WeakSet()


class WalCheckpointer:
    """Checkpoints the WAL of the SQLite database at ``path`` from a thread (module docstring)."""

    def __init__(self, path: Path, *, every: float = CHECKPOINT_SECONDS) -> None:
        self.path = path
        self.every = every
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._failing = False
        self._calling = threading.Lock()  # held around each SQLite call; a fork waits for it
        _LIVE.add(self)

    def ensure_running(self) -> None:
        """Start the thread in this process unless it runs already (idempotent, fork-aware)."""
        with self._lock:
            if self.running:
                return
            self._stop = threading.Event()  # a fresh one: the parent's may be set, or held
            self._pid = os.getpid()
            self._thread = threading.Thread(
                target=self._run, args=(self._stop,), name="sqlite-checkpoints", daemon=True
            )
            self._thread.start()

    @property
    def running(self) -> bool:
        """Whether this process's checkpoint thread runs."""
        thread = self._thread
        return thread is not None and thread.is_alive() and self._pid == os.getpid()

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=BUSY_TIMEOUT_SECONDS + 1)

    def checkpoint(self, connection: sqlite3.Connection) -> None:
        """One PASSIVE checkpoint; a failure is logged once until one succeeds again (the
        backstop still checkpoints meanwhile), never raised into the thread."""
        try:
            with self._calling:
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as e:
            self._failed("background WAL checkpoint", e)
            return
        self._succeeded()

    def _failed(self, what: str, error: Exception) -> None:
        if not self._failing:
            log.warning("%s of %s failed: %s (logged once until it works)", what, self.path, error)
        self._failing = True

    def _succeeded(self) -> None:
        if self._failing:
            log.info("background WAL checkpoints of %s work again", self.path)
        self._failing = False

    def _run(self, stop: threading.Event) -> None:
        connection: sqlite3.Connection | None = None
        try:
            while not stop.wait(self.every):
                if connection is None:
                    connection = self._connect()
                    if connection is None:
                        continue
                self.checkpoint(connection)
        finally:
            if connection is not None:
                connection.close()

    def _connect(self) -> sqlite3.Connection | None:
        # mode=rw: never create the file (its owner-only mode is make_engine's to set)
        uri = f"file:{quote(str(self.path.absolute()))}?mode=rw"
        try:
            with self._calling:
                return sqlite3.connect(
                    uri,
                    uri=True,
                    timeout=BUSY_TIMEOUT_SECONDS,
                    isolation_level=None,
                    check_same_thread=True,
                )
        except sqlite3.Error as e:
            self._failed("connecting for background WAL checkpoints", e)
            return None


def checkpoint_in_background(engine: Engine, path: Path) -> WalCheckpointer:
    """Give ``engine`` (SQLite, on ``path``) a checkpoint thread; its connections get the
    backstop. Call before the engine's first connection, so every connection gets it."""
    checkpointer = WalCheckpointer(path)

    def on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
        cursor.close()
        checkpointer.ensure_running()

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "engine_disposed", lambda _engine: checkpointer.stop())
    weakref.finalize(engine, checkpointer.stop)
    return checkpointer


_HELD_FOR_FORK: list[threading.Lock] = []


def _before_fork() -> None:
    for checkpointer in list(_LIVE):
        lock = checkpointer._calling  # this module's own fork hook
        lock.acquire()
        _HELD_FOR_FORK.append(lock)


def _after_fork() -> None:
    while _HELD_FOR_FORK:
        _HELD_FOR_FORK.pop().release()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork, after_in_child=_after_fork)
