"""A worker at rest writes nothing at info: Celery's per-task lines about the routine tasks
become debug."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from verifier.task_names import (
    BATCH_TASK,
    CHECKPOINT_TASK,
    COMPACT_TASK,
    DISPATCH_TASK,
    RECONCILE_TASK,
    WATCHDOG_TASK,
)

# Celery logs every task received, succeeded (and sent by beat, or discarded once expired) at
# info. Four dispatch ticks a second and a batch per few agents per interval made ~12 MB an hour
# of worker log at rest; these routine tasks' lines become debug (the periodic checkpoint too:
# its tree grows with every kept record). Webhook lines stay at info.
ROUTINE_TASKS = frozenset(
    {DISPATCH_TASK, RECONCILE_TASK, WATCHDOG_TASK, COMPACT_TASK, BATCH_TASK, CHECKPOINT_TASK}
)
_CELERY_TASK_LOGGERS = (
    "celery.app.trace", "celery.worker.strategy", "celery.worker.request", "celery.beat",
)  # fmt: skip


class _RoutineLinesToDebug(logging.Filter):
    """Re-levels Celery's info lines about ``ROUTINE_TASKS`` to debug (kept only when the root
    logger is at DEBUG); warnings and errors, and every other line, pass unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        args = record.args
        values = args.values() if isinstance(args, Mapping) else (args or ())
        if not any(isinstance(value, str) and value in ROUTINE_TASKS for value in values):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def quiet_tick_logs() -> None:
    """Install ``_RoutineLinesToDebug`` on Celery's task loggers (once per process)."""
    for name in _CELERY_TASK_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RoutineLinesToDebug) for f in logger.filters):
            logger.addFilter(_RoutineLinesToDebug())
