"""``verifier push-serve``: the push listener, on the round engine of this process (ADR 19)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from celery import Celery

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
    settings: Settings, enqueue_delivery: Callable[[int], None] | None = None
) -> tuple[PushServer, VerifierRuntime]:
    """The bound (not yet serving) push listener and the round engine behind it.

    The listener's certificate is issued for ``push_names`` (default ``push_host``) by the
    verifier's client CA in
    ``verifier_tls_dir`` (made there, with the CA, if missing)."""
    names = list(settings.push_names) or [settings.push_host]
    cert, key = ensure_push_server_tls(settings.verifier_tls_dir, names)
    runtime = VerifierRuntime(settings, enqueue_delivery or _webhook_sender(settings))
    challenges = PushChallenges(
        runtime.hot_client,
        lifetime=settings.push_challenge_seconds,
        per_minute=settings.push_challenges_per_minute,
    )
    rounds = PushRounds(lambda: runtime, challenges, lock_wait=POST_LOCK_WAIT_SECONDS)
    trust = PushTrust(cert, key, runtime.fleet)
    server = make_push_server(
        create_push_app(rounds), trust, settings.push_host, settings.push_port
    )
    return server, runtime


def serve_push(settings: Settings) -> None:
    """Serve the push listener until interrupted."""
    server, runtime = build_push_server(settings)
    log.info("verifier push listener on %s:%d", settings.push_host, server.server_port)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        runtime.close()


def _webhook_sender(settings: Settings) -> Callable[[int], None]:
    """Queue a webhook delivery for the workers (a push round that fails the agent); the Celery
    app is made on the first delivery."""
    lock = threading.Lock()
    built: list[Celery] = []

    def send(delivery_id: int) -> None:
        from verifier.worker import WEBHOOK_TASK, create_celery

        with lock:
            if not built:
                built.append(create_celery(settings))
        built[0].send_task(WEBHOOK_TASK, (delivery_id,))

    return send
