"""Structured logging for every geoattest process.

Modules log with ``logging.getLogger(__name__)`` and lazy ``%s`` arguments. Only the entry
points call ``configure_logging``. Context (``agent_id``, ``round_id``, ``request_id``) is bound
through contextvars and lands in every record emitted inside that context. Never log keys,
tokens or full certificates.

This module is a leaf: it imports nothing from the project.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator

_CONTEXT: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("geoattest_log_context")
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


ContextToken = contextvars.Token[dict[str, str]]


def push_context(**values: str) -> ContextToken:
    """Bind key-values to every later log record of this context; undo with ``pop_context``."""
    return _CONTEXT.set({**_CONTEXT.get({}), **values})


def pop_context(token: ContextToken) -> None:
    _CONTEXT.reset(token)


@contextlib.contextmanager
def bound(**values: str) -> Iterator[None]:
    """Bind key-values (e.g. ``agent_id=…``) to every log record inside the ``with`` block."""
    token = push_context(**values)
    try:
        yield
    finally:
        pop_context(token)


def current_context() -> dict[str, str]:
    return dict(_CONTEXT.get({}))


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _CONTEXT.get({}).items():
            setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event, then every bound or ``extra`` key."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        body.update(
            (key, value) for key, value in vars(record).items() if key not in _STANDARD_ATTRS
        )
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


class TextFormatter(logging.Formatter):
    """Human-readable lines with the bound context appended as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = " ".join(
            f"{key}={value}" for key, value in vars(record).items() if key not in _STANDARD_ATTRS
        )
        return f"{line} {extras}" if extras else line


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send all logs to stderr in the chosen format; safe to call more than once."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
