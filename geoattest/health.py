"""Health routes every service serves: ``GET /v1/healthz`` (alive) and ``GET /v1/readyz`` (ready).

Every answer of a service that registers these routes carries ``X-Geoattest-Service: <name>``.

``healthz`` answers 200 as long as the process serves HTTP: it reads nothing, so a load balancer
or supervisor can tell a hung process from a sick dependency. ``readyz`` runs the service's
checks (the database, Redis, recent workers) and answers 200 when every one passes, otherwise
503 with each check's result, so the body says what is down::

    {"status": "unavailable", "service": "verifier", "down": ["redis"],
     "checks": {"database": {"ok": true, "detail": "ok"},
                "redis": {"ok": false, "detail": "Error 111 connecting to 127.0.0.1:6379."},
                "workers": {"ok": false, "detail": "redis unreachable"}}}

A check is a callable that returns a detail string when the dependency is fine and raises when
it is not; each is bounded by the timeouts of the client it uses (a second or two), never by
an HTTP deadline. Both routes are ``@public``: they reveal no data, and monitors hold no keys.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Mapping

import redis
from flask import Blueprint, Response, jsonify
from sqlalchemy import Engine, text

from geoattest.access.guard import public
from geoattest.openapi import documented
from geoattest.wire import HealthView

log = logging.getLogger(__name__)

SERVICE_HEADER = "X-Geoattest-Service"  # on every answer of the service: its name
Check = Callable[[], str]  # returns a detail when fine; raises when the dependency is not
SQLITE_PROBE_TIMEOUT_MS = 1000


def health_blueprint(service: str, checks: Mapping[str, Check]) -> Blueprint:
    """A blueprint with ``/v1/healthz`` and ``/v1/readyz`` for ``service`` running ``checks``."""
    routes = Blueprint(f"{service}_health", __name__, url_prefix="/v1")

    @routes.after_app_request
    def name_the_service(response: Response) -> Response:
        # Every answer says which service gave it: a client given the verifier's URL for the
        # registrar's can say so in one line (``geoattest.peer_errors``).
        response.headers[SERVICE_HEADER] = service
        return response

    @routes.get("/healthz")
    @public
    @documented("Liveness", answer=HealthView)
    def healthz() -> Response:
        return jsonify({"status": "ok", "service": service})

    @routes.get("/readyz")
    @public
    @documented(
        "Readiness: the database, Redis and (verifier) recent workers; 503 names what is down"
    )
    def readyz() -> tuple[Response, int]:
        results: dict[str, dict[str, object]] = {}
        for name, check in checks.items():
            try:
                results[name] = {"ok": True, "detail": check()}
            except Exception as e:  # a check's whole point: any failure is "down", with why
                detail = _one_line(e)
                log.warning("readiness: %s down: %s", name, detail)
                results[name] = {"ok": False, "detail": detail}
        down = [name for name, result in results.items() if not result["ok"]]
        body = {
            "status": "ready" if not down else "unavailable",
            "service": service,
            "down": down,
            "checks": results,
        }
        return jsonify(body), 200 if not down else 503

    return routes


def database_check(engine: Engine) -> Check:
    """The database answers, and (SQLite) its write lock can be taken within a second: in WAL
    mode a reader is never blocked, so only a write probe shows a database held locked."""

    def check() -> str:
        if engine.url.get_backend_name() != "sqlite":
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return "ok"
        raw = engine.raw_connection()
        try:
            driver = raw.driver_connection
            if not isinstance(driver, sqlite3.Connection):
                raise TypeError(f"unexpected SQLite driver connection {type(driver).__name__}")
            busy = driver.execute("PRAGMA busy_timeout").fetchone()
            driver.execute(f"PRAGMA busy_timeout={SQLITE_PROBE_TIMEOUT_MS}")
            try:
                driver.execute("BEGIN IMMEDIATE")
                driver.execute("ROLLBACK")
            finally:
                driver.execute(f"PRAGMA busy_timeout={int(busy[0]) if busy else 30000}")
        finally:
            raw.close()
        return "ok"

    return check


def redis_check(client: redis.Redis) -> Check:
    """Redis answers PING (the client's own socket timeouts bound the wait)."""

    def check() -> str:
        client.ping()
        return "ok"

    return check


def _one_line(error: Exception) -> str:
    message = str(error).strip().splitlines()
    return (message[0] if message else type(error).__name__)[:300]
