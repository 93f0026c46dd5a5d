"""Serving the verifier's metrics: one process's, or a Celery worker's pool summed.

A Celery worker forks pool processes that run the rounds; each counts into its own memory-mapped
files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode) and the worker's
main process, which runs no rounds, serves their sum on ``worker_metrics_port``. That directory
must be set before prometheus_client is first imported (the library picks its value class at
import), so the worker's CLI calls ``prepare_multiprocess_dir`` before it imports the worker.

The directory is owner-only (another user who could write there could forge the counts) and
emptied at start (files of an earlier run would add to this run's counters). The worker's
listener asks for a viewer API key, as the API's ``/metrics`` does (``docs/metrics.md``).
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from geoattest.access.keys import Role
from geoattest.private_files import ensure_private_dir

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

    from geoattest.access.store import AccessStore

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def prepare_multiprocess_dir(path: Path | None) -> Path:
    """Make ``path`` (or a fresh private temporary directory) the multiprocess directory of this
    process and its children: owner-only, emptied of earlier runs' files. Raises
    ``ConfigurationError`` for a directory other users could reach, ``RuntimeError`` when
    prometheus_client was imported already (it would ignore the directory)."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before its multiprocess directory")
    directory = private_metrics_dir(path)
    os.environ[MULTIPROC_ENV] = str(directory)
    return directory


def private_metrics_dir(path: Path | None) -> Path:
    """``path`` made owner-only and emptied of metric files (``*.db``), or a fresh private
    temporary directory removed when this process exits; ``ConfigurationError`` for one other
    users could reach."""
    if path is None:
        made = Path(tempfile.mkdtemp(prefix="geoattest-metrics-"))  # 0700, ours
        atexit.register(shutil.rmtree, made, ignore_errors=True)  # ours to remove, at exit
        return made
    directory = ensure_private_dir(path)
    for stale in directory.glob("*.db"):
        stale.unlink()
    return directory


def exposition() -> bytes:
    """This process's metrics in the text format; in multiprocess mode, every process's summed
    (the directory's files: live and exited pool processes alike, as counters must be)."""
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess

    if MULTIPROC_ENV not in os.environ:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped lib
    return generate_latest(registry)


def mark_pool_processes_dead() -> None:
    """Tell prometheus_client when a pool process exits (its live gauges stop counting)."""
    from celery.signals import worker_process_shutdown
    from prometheus_client import multiprocess

    def dead(**_: object) -> None:
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]  # untyped lib

    worker_process_shutdown.connect(dead, weak=False)


def metrics_app(
    store: AccessStore, body: Callable[[], bytes] = exposition
) -> Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]:
    """A WSGI app serving ``GET /metrics`` to callers with a viewer (or higher) API key."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics" or environ.get("REQUEST_METHOD") != "GET":
            return _error(start_response, "404 Not Found", "not_found", "only GET /metrics")
        header = str(environ.get("HTTP_AUTHORIZATION", ""))
        if not header.startswith("Bearer "):
            return _error(start_response, "401 Unauthorized", "api_key_required",
                          "GET /metrics needs an API key: 'Authorization: Bearer …'")  # fmt: skip
        found = store.authenticate(header.removeprefix("Bearer ").strip())
        if found is None:
            return _error(start_response, "401 Unauthorized", "api_key_invalid",
                          "the API key is unknown, revoked or malformed")  # fmt: skip
        if not found.role.allows(Role.VIEWER):
            return _error(start_response, "403 Forbidden", "role_insufficient",
                          f"GET /metrics needs role {Role.VIEWER}")  # fmt: skip
        data = body()
        start_response("200 OK", [("Content-Type", CONTENT_TYPE),
                                  ("Content-Length", str(len(data)))])  # fmt: skip
        return [data]

    return app


def serve_in_thread(
    app: Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]], host: str, port: int
) -> int:
    """Serve ``app`` on ``host:port`` from a daemon thread (the worker's main process goes on
    to run Celery); returns the port bound (``port`` 0 picks a free one)."""
    import waitress.server

    server = waitress.server.create_server(app, host=host, port=port, threads=2)
    bound = int(server.effective_port)  # type: ignore[union-attr]  # one listener, not a multi
    threading.Thread(target=server.run, name="worker-metrics", daemon=True).start()
    log.info("worker metrics on http://%s:%d/metrics", host, bound)
    return bound


def _error(start_response: StartResponse, status: str, code: str, message: str) -> list[bytes]:
    import json

    data = json.dumps({"error": {"code": code, "message": message}}).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(data)))])  # fmt: skip
    return [data]
