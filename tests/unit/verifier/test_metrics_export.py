"""The worker's metrics directory and listener: owner-only, emptied at start, and the listener
serves only GET /metrics to viewer keys (on a real SQLite access store)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from werkzeug.test import Client

from geoattest.access.keys import Role
from geoattest.access.store import AccessStore
from geoattest.cli import EXIT_CONFIG
from geoattest.db import make_engine, migrate, session_factory
from geoattest.errors import ConfigurationError
from verifier.metrics_export import metrics_app, private_metrics_dir


def test_a_given_directory_is_made_owner_only_and_emptied_of_an_earlier_runs_files(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "metrics"
    assert private_metrics_dir(directory) == directory
    assert directory.stat().st_mode & 0o777 == 0o700
    (directory / "counter_123.db").write_bytes(b"an earlier run")
    (directory / "notes.txt").write_text("not ours")
    private_metrics_dir(directory)
    assert sorted(p.name for p in directory.iterdir()) == ["notes.txt"]


def test_a_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "open"
    directory.mkdir()
    directory.chmod(0o777)
    with pytest.raises(ConfigurationError, match="0777"):
        private_metrics_dir(directory)


def test_without_a_directory_a_fresh_private_one_is_made() -> None:
    first, second = private_metrics_dir(None), private_metrics_dir(None)
    assert first != second
    assert first.stat().st_mode & 0o777 == 0o700  # removed when the process exits


def test_the_worker_refuses_to_start_on_an_open_metrics_directory(tmp_path: Path) -> None:
    directory = tmp_path / "open"
    directory.mkdir()
    directory.chmod(0o757)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOATTEST_")}
    env.update(GEOATTEST_WORKER_METRICS_PORT="0", GEOATTEST_WORKER_METRICS_DIR=str(directory),
               GEOATTEST_REDIS_URL="redis://127.0.0.1:1/0")  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "geoattest", "verifier", "worker"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert str(directory) in done.stderr
    assert "0757" in done.stderr


def test_the_listener_serves_metrics_to_viewers_only(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'verifier.sqlite'}")
    migrate(engine)
    store = AccessStore(session_factory(engine))
    now = dt.datetime.now(dt.UTC)
    viewer = store.create("prometheus", Role.VIEWER, now)
    revoked = store.create("old", Role.ADMIN, now)
    store.revoke("old", now)
    client = Client(metrics_app(store, body=lambda: b"geoattest_up 1\n"))
    ok = client.get("/metrics", headers={"Authorization": f"Bearer {viewer}"})
    assert (ok.status_code, ok.data) == (200, b"geoattest_up 1\n")
    assert ok.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    for headers, status, code in (
        ({}, 401, "api_key_required"),
        ({"Authorization": "Bearer gak_0123"}, 401, "api_key_invalid"),
        ({"Authorization": f"Bearer {revoked}"}, 401, "api_key_invalid"),
    ):
        answer = client.get("/metrics", headers=headers)
        assert answer.status_code == status
        assert answer.json is not None
        assert answer.json["error"]["code"] == code
    elsewhere = client.get("/v1/agents", headers={"Authorization": f"Bearer {viewer}"})
    assert elsewhere.status_code == 404
    posted = client.post("/metrics", headers={"Authorization": f"Bearer {viewer}"})
    assert posted.status_code == 404
    engine.dispose()
