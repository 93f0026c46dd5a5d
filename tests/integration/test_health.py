"""Health and readiness of both services, and what a request meets while a dependency is down:
``/v1/healthz`` always answers while the process serves, ``/v1/readyz`` names what is down
(503), a write while Redis or the database is down is a 503 ``dependency_unavailable`` (never a
500), and a worker started without Redis exits 3 at once with one clear line.

The services run their real app factories on a real redis-server (stopped and started by the
test) and a real database (SQLite file and PostgreSQL)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from geoattest.access.keys import Role
from geoattest.settings import load_settings
from registrar.app import create_app as create_registrar
from tests.support.access import bearer, issue_api_key
from tests.support.redis_server import RedisServer, running_redis_server
from tests.support.service_apps import registrar_signing_key
from tests.support.service_apps import verifier_app as make_verifier_app
from tests.support.verifier_stack import settings_environment
from verifier.storage.hot_state import HotState, connect_redis

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis_server(tmp_path) as server:
        yield server


@pytest.fixture
def verifier_app(
    tmp_path: Path, trust_dir: Path, redis_process: RedisServer, database_url: str
) -> Iterator[Flask]:
    app = _verifier(tmp_path, trust_dir, redis_process, database_url)
    yield app
    app.extensions["geoattest.engine"].dispose()


def _verifier(tmp_path: Path, trust_dir: Path, redis_process: RedisServer, url: str) -> Flask:
    key = registrar_signing_key(tmp_path, trust_dir)
    return make_verifier_app(tmp_path, trust_dir, redis_process.url, key, database_url=url)


def _ready(app: Flask) -> tuple[int, dict[str, object]]:
    answer = app.test_client().get("/v1/readyz")
    assert answer.json is not None
    return answer.status_code, answer.json


def test_the_verifier_is_ready_only_with_a_worker_seen(
    verifier_app: Flask, redis_process: RedisServer
) -> None:
    status, body = _ready(verifier_app)
    assert status == 503
    assert body["down"] == ["workers"], body
    HotState(connect_redis(redis_process.url)).heartbeat("host:1234")  # what a worker writes
    status, body = _ready(verifier_app)
    assert status == 200, body
    assert body["status"] == "ready"
    assert verifier_app.test_client().get("/v1/healthz").status_code == 200


def test_redis_down_is_named_and_writes_answer_503_not_500(
    verifier_app: Flask, redis_process: RedisServer, database_url: str
) -> None:
    HotState(connect_redis(redis_process.url)).heartbeat("host:1234")
    key = issue_api_key(database_url, Role.ADMIN)
    redis_process.stop()
    started = time.monotonic()
    status, body = _ready(verifier_app)
    assert time.monotonic() - started < 5
    assert status == 503
    assert body["down"] == ["redis", "workers"], body
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert checks["database"]["ok"] is True
    answer = verifier_app.test_client().put(
        "/v1/policies/p", json={"ima_banks": ["sha256"]}, headers=bearer(key)
    )
    assert answer.status_code == 503, answer.json
    assert answer.json is not None
    assert answer.json["error"]["code"] == "dependency_unavailable"
    assert "redis" in answer.json["error"]["message"]
    assert verifier_app.test_client().get("/v1/healthz").status_code == 200
    redis_process.start()  # and back: the same client reconnects
    HotState(connect_redis(redis_process.url)).heartbeat("host:1234")
    assert _ready(verifier_app)[0] == 200
    again = verifier_app.test_client().put(
        "/v1/policies/p", json={"ima_banks": ["sha256"]}, headers=bearer(key)
    )
    assert again.status_code == 200, again.json


def test_a_locked_sqlite_database_is_not_ready(
    redis_process: RedisServer, tmp_path: Path, trust_dir: Path
) -> None:
    """In WAL mode readers are never blocked: only the write probe shows the lock."""
    path = tmp_path / "verifier.sqlite"
    verifier_app = _verifier(tmp_path, trust_dir, redis_process, f"sqlite:///{path}")
    HotState(connect_redis(redis_process.url)).heartbeat("host:1234")
    locker = sqlite3.connect(path, timeout=1)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        status, body = _ready(verifier_app)
        assert status == 503
        assert body["down"] == ["database"], body
    finally:
        locker.rollback()
        locker.close()
    assert _ready(verifier_app)[0] == 200
    verifier_app.extensions["geoattest.engine"].dispose()


def test_the_registrar_names_a_database_it_cannot_reach(tmp_path: Path, trust_dir: Path) -> None:
    # A SQLite file whose directory disappears under the running service: every connection
    # fails (the readiness check opens one), while the process still serves /v1/healthz.
    database = tmp_path / "db" / "registrar.sqlite"
    app = create_registrar(
        load_settings(
            database_url=f"sqlite:///{database}",
            registrar_state_dir=tmp_path / "registrar-state",
            ek_ca_dir=trust_dir,
        )
    )
    client = app.test_client()
    assert client.get("/v1/readyz").status_code == 200
    app.extensions["geoattest.engine"].dispose()
    for path in database.parent.iterdir():
        path.unlink()
    database.parent.rmdir()
    answer = client.get("/v1/readyz")
    assert answer.status_code == 503
    assert answer.json is not None
    assert answer.json["down"] == ["database"]
    assert client.get("/v1/healthz").status_code == 200
    listing = client.get("/v1/agents", headers=bearer("gak_" + "0" * 16 + "_" + "A" * 43))
    assert listing.status_code == 503, listing.json  # the key lookup itself needs the database
    assert listing.json is not None
    assert listing.json["error"]["code"] == "dependency_unavailable"
    app.extensions["geoattest.engine"].dispose()


def test_a_worker_without_redis_exits_3_at_once_with_one_clear_line(tmp_path: Path) -> None:
    dead = RedisServer(tmp_path)  # a free port nothing listens on
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'v.sqlite'}",
        redis_url=dead.url,
        verifier_tls_dir=tmp_path / "tls",
    )
    for command in (["worker"], ["beat"]):
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "geoattest", "verifier", *command],
            env=settings_environment(settings),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
        )
        assert done.returncode == 3, done.stderr
        assert time.monotonic() - started < 20
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        masked = dead.url.replace(dead.url.split("@")[0].split(":")[-1], "***")
        assert lines[0].startswith("error: dependency_unavailable: Redis at " + masked), lines
        assert dead.url.split("@")[0] not in done.stderr  # the password is never printed
        assert "Traceback" not in done.stderr
