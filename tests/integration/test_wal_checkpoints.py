"""``geoattest.wal_checkpoints`` on a real SQLite file: with background checkpoints a commit only
appends to the write-ahead log and the thread copies it into the database file; without them
nothing copies it until the log passes SQLite's own threshold. The thread stops with its engine
and starts again in a forked child (Celery's pool processes, the pre-forked API)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from geoattest.db import make_engine
from geoattest.wal_checkpoints import (
    BACKSTOP_PAGES,
    CHECKPOINT_SECONDS,
    WalCheckpointer,
    checkpoint_in_background,
)

ROWS = 300  # ~300 pages: below SQLite's automatic checkpoint (1,000) and our backstop
ROW_BYTES = 4000


def _write(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE IF NOT EXISTS filler (data BLOB)"))
        connection.execute(
            text("INSERT INTO filler (data) VALUES (:data)"),
            [{"data": os.urandom(ROW_BYTES)} for _ in range(ROWS)],
        )


def _copied_into_the_file(path: Path, within: float) -> bool:
    """Whether the rows reached the database file itself (a checkpoint ran) within ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        if path.stat().st_size >= ROWS * ROW_BYTES:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def test_the_thread_checkpoints_what_commits_only_appended(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    engine = make_engine(f"sqlite:///{path}", background_checkpoints=True)
    _write(engine)
    assert _copied_into_the_file(path, within=20 * CHECKPOINT_SECONDS)
    engine.dispose()


def test_without_the_thread_the_rows_stay_in_the_log(tmp_path: Path) -> None:
    """The control: the test above fails if the thread does not run."""
    path = tmp_path / "db.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    _write(engine)
    assert not _copied_into_the_file(path, within=8 * CHECKPOINT_SECONDS)
    engine.dispose()


def test_connections_keep_an_automatic_checkpoint_as_a_backstop(tmp_path: Path) -> None:
    background = make_engine(f"sqlite:///{tmp_path / 'a.sqlite'}", background_checkpoints=True)
    default = make_engine(f"sqlite:///{tmp_path / 'b.sqlite'}")
    with background.connect() as one, default.connect() as other:
        assert one.execute(text("PRAGMA wal_autocheckpoint")).scalar_one() == BACKSTOP_PAGES
        assert other.execute(text("PRAGMA wal_autocheckpoint")).scalar_one() == 1000
    background.dispose()
    default.dispose()


def test_the_thread_starts_on_first_connection_and_stops_with_the_engine(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    checkpointer = checkpoint_in_background(engine, path)
    assert not checkpointer.running
    with engine.connect():
        pass
    assert checkpointer.running
    engine.dispose()
    assert not checkpointer.running


def test_a_forked_child_checkpoints_with_a_thread_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    engine = make_engine(f"sqlite:///{path}", background_checkpoints=True)
    with engine.connect():
        pass  # the parent's thread runs; a fork does not copy it
    parent_stopped, tell_child = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        status = 1
        try:
            os.read(parent_stopped, 1)  # the parent's thread can no longer copy the rows
            engine.dispose(close=False)  # what SQLAlchemy asks of a child: its own connections
            _write(engine)
            status = 0 if _copied_into_the_file(path, within=20 * CHECKPOINT_SECONDS) else 2
        finally:
            os._exit(status)
    engine.dispose()
    os.write(tell_child, b"1")
    _, raw = os.waitpid(pid, 0)
    os.close(parent_stopped)
    os.close(tell_child)
    assert os.waitstatus_to_exitcode(raw) == 0


def test_the_thread_never_creates_a_missing_database_file(tmp_path: Path) -> None:
    """Its mode is make_engine's to set (owner-only); SQLite would create it with the umask's."""
    path = tmp_path / "gone.sqlite"
    checkpointer = WalCheckpointer(path, every=0.02)
    checkpointer.ensure_running()
    time.sleep(0.3)
    checkpointer.stop()
    assert not path.exists()


def test_a_failure_to_connect_is_logged_once_not_every_pass(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "a-directory"
    path.mkdir()
    checkpointer = WalCheckpointer(path, every=0.02)
    with caplog.at_level(logging.WARNING, logger="geoattest.wal_checkpoints"):
        checkpointer.ensure_running()
        time.sleep(0.5)  # ~25 passes
        checkpointer.stop()
    warnings = [r for r in caplog.records if r.name == "geoattest.wal_checkpoints"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "logged once" in warnings[0].getMessage()
