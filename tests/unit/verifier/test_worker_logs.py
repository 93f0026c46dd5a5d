"""The worker at rest writes nothing at info: Celery's per-task lines about the routine tasks
(dispatch ticks, watchdog, reconcile, compaction, round batches) are re-levelled to debug; a
webhook delivery and anything else keeps its level."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from verifier.task_names import BATCH_TASK, DISPATCH_TASK, WEBHOOK_TASK
from verifier.worker_logs import quiet_tick_logs


@pytest.fixture
def captured() -> Iterator[list[logging.LogRecord]]:
    """Records that reach a handler on Celery's loggers with the filter installed, root at
    INFO (a worker's default)."""
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            # Only Celery's lines: a thread another test of this worker process left running
            # (a revocation listener whose Redis is gone) logs through root too.
            if record.name == "celery" or record.name.startswith("celery."):
                seen.append(record)

    handler = Keep()
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    quiet_tick_logs()
    yield seen
    root.removeHandler(handler)
    root.setLevel(level)


def _emit(logger: str, message: str, args: object) -> None:
    logging.getLogger(logger).info(message, args)


def test_routine_task_lines_are_not_written_at_info(captured: list[logging.LogRecord]) -> None:
    # The shapes Celery 5 uses: a mapping (trace), a tuple (strategy, request, beat).
    logging.getLogger("celery.app.trace").info(
        "Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s",
        {"name": DISPATCH_TASK, "id": "1", "runtime": 0.01, "return_value": 0},
    )
    logging.getLogger("celery.worker.strategy").info("Task %s[%s] received", BATCH_TASK, "2")
    logging.getLogger("celery.beat").info(
        "Scheduler: Sending due task %s (%s)", "dispatch", DISPATCH_TASK
    )
    logging.getLogger("celery.worker.request").info(
        "Discarding revoked task: %s[%s]", DISPATCH_TASK, "3"
    )
    assert captured == []


def test_other_lines_keep_their_level(captured: list[logging.LogRecord]) -> None:
    logging.getLogger("celery.worker.strategy").info("Task %s[%s] received", WEBHOOK_TASK, "4")
    logging.getLogger("celery.apps.worker").info("celery@host ready.")
    logging.getLogger("celery.app.trace").error("Task %s[%s] raised", BATCH_TASK, "5")
    assert [(r.levelno, r.getMessage()) for r in captured] == [
        (logging.INFO, f"Task {WEBHOOK_TASK}[4] received"),
        (logging.INFO, "celery@host ready."),
        (logging.ERROR, f"Task {BATCH_TASK}[5] raised"),
    ]


def test_routine_lines_are_kept_at_debug(captured: list[logging.LogRecord]) -> None:
    logging.getLogger().setLevel(logging.DEBUG)
    logging.getLogger("celery.worker.strategy").info("Task %s[%s] received", BATCH_TASK, "6")
    assert [(r.levelname, r.getMessage()) for r in captured] == [
        ("DEBUG", f"Task {BATCH_TASK}[6] received")
    ]
