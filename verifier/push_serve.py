"""``verifier push-serve``: the push listener, on the round engine of this process (ADR 19)."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from celery import Celery

from geoattest.prefork import listen, serve_processes
from geoattest.settings import Settings
from geoattest.tls_material import ensure_push_server_tls
from verifier.engine.push import PushChallenges, PushRounds
from verifier.engine.push_server import PushServer, PushTrust, make_push_server
from verifier.engine.runtime import VerifierRuntime
from verifier.web.push_api import create_push_app

__all__ = ["build_push_server", "serve_push"]

log = logging.getLogger(__name__)

POST_LOCK_WAIT_SECONDS = 5.0  # a post waits this long for the watchdog or a slow commit


def build_push_server(
    settings: Settings,
    enqueue_delivery: Callable[[int], None] | None = None,
    *,
    sock: socket.socket | None = None,
) -> tuple[PushServer, VerifierRuntime]:
    """The bound (not yet serving) push listener and the round engine behind it; on ``sock``
    (a listening socket shared by forked processes) when given.

    The listener's certificate is issued for ``push_names`` (default ``push_host``) by the
    verifier's client CA in ``verifier_tls_dir`` (made there, with the CA, if missing)."""
    cert, key = push_tls(settings)
    runtime = VerifierRuntime(settings, enqueue_delivery or _webhook_sender(settings))
    challenges = PushChallenges(
        runtime.hot_client,
        lifetime=settings.push_challenge_seconds,
        per_minute=settings.push_challenges_per_minute,
    )
    rounds = PushRounds(lambda: runtime, challenges, lock_wait=POST_LOCK_WAIT_SECONDS)
    trust = PushTrust(cert, key, runtime.fleet)
    server = make_push_server(
        create_push_app(rounds), trust, settings.push_host, settings.push_port, sock=sock
    )
    return server, runtime


def push_tls(settings: Settings) -> tuple[Path, Path]:
    """(certificate, key) of the listener, issued for ``push_names`` if missing."""
    names = list(settings.push_names) or [settings.push_host]
    return ensure_push_server_tls(settings.verifier_tls_dir, names)


def serve_push(settings: Settings, *, exit_status: Callable[[BaseException], int]) -> int:
    """Serve the push listener until interrupted, from ``push_processes`` processes on one
    port (``geoattest.prefork``; each builds its own round engine after the fork). Returns the
    exit status: 0, or that of a process that failed to start (``exit_status`` maps what it
    raised)."""
    if settings.push_processes == 1:
        server, runtime = build_push_server(settings)
        log.info("verifier push listener on %s:%d", settings.push_host, server.server_port)
        try:
            server.serve_forever()
        finally:
            server.server_close()
            runtime.close()
        return 0
    push_tls(settings)  # once, before any fork: children never race to write push.pem
    sock = listen(settings.push_host, settings.push_port)
    log.info("verifier push listener on %s:%d (%d processes)", settings.push_host,
             settings.push_port, settings.push_processes)  # fmt: skip

    def build() -> tuple[PushServer, VerifierRuntime]:
        return build_push_server(settings, sock=sock)

    def serve(built: tuple[PushServer, VerifierRuntime], _sock: socket.socket) -> None:
        server, runtime = built
        try:
            server.serve_forever()
        finally:
            runtime.close()

    with sock:
        return serve_processes(
            build,
            sock,
            processes=settings.push_processes,
            threads=0,  # unused: each process's server makes a thread per connection
            ident="geoattest-push",
            exit_status=exit_status,
            serve=serve,
        )


def _webhook_sender(settings: Settings) -> Callable[[int], None]:
    """Queue a webhook delivery for the workers (a push round that fails the agent); the Celery
    app is made on the first delivery."""
    lock = threading.Lock()
    built: list[Celery] = []

    def send(delivery_id: int) -> None:
        from verifier.task_names import WEBHOOK_TASK
        from verifier.worker import create_celery

        with lock:
            if not built:
                built.append(create_celery(settings))
        built[0].send_task(WEBHOOK_TASK, (delivery_id,))

    return send
