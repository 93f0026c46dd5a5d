"""A real verifier for end-to-end tests: its API over HTTP in a thread, and a Celery worker with
an embedded beat in its own process, both on a real redis-server and a real SQLite file."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from geoattest.access.keys import Role
from geoattest.registrar_client import RegistrarClient
from geoattest.settings import Settings, load_settings
from geoattest.tls_material import ensure_verifier_client_tls
from tests.support.access import bearer, issue_api_key
from tests.support.redis_server import running_redis
from tests.support.registrar_server import RunningRegistrar, running_registrar, trust_dir_with
from tests.support.served_app import served
from tests.support.service_process import verifier_celery
from verifier.app import close_app, create_app


@dataclass(frozen=True, slots=True)
class RunningVerifier:
    url: str
    settings: Settings
    client_ca: Path  # agents must trust this CA for the verifier's client certificate
    api_key: str  # an admin key of this verifier

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:  # noqa: ANN401
        """A call to ``path`` presenting the admin API key."""
        headers = {**bearer(self.api_key), **kwargs.pop("headers", {})}
        return requests.request(method, self.url + path, headers=headers, timeout=10, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:  # noqa: ANN401
        return self.request("GET", path, **kwargs)

    def put_policy(self, name: str, document: Mapping[str, object]) -> requests.Response:
        return self.request("PUT", f"/v1/policies/{name}", json=document)

    def add_agent(self, agent_id: str, policy: str) -> requests.Response:
        return self.request("POST", f"/v1/agents/{agent_id}", json={"policy": policy})

    def status(self, agent_id: str) -> dict[str, object]:
        response = self.get(f"/v1/agents/{agent_id}")
        response.raise_for_status()
        body: dict[str, object] = response.json()
        return body

    def events(self, agent_id: str) -> list[dict[str, object]]:
        response = self.get(f"/v1/agents/{agent_id}/events")
        response.raise_for_status()
        events: list[dict[str, object]] = response.json()["events"]
        return events

    def act(self, agent_id: str, action: str) -> requests.Response:
        return self.request("POST", f"/v1/agents/{agent_id}/{action}", json={})

    def forget(self, registrar: RegistrarClient, agent_ids: Iterable[str]) -> None:
        """Remove agents from this verifier and from the registrar (swtpm templates repeat EKs
        across tests: neither service may keep holding one)."""
        for agent_id in agent_ids:
            self.request("DELETE", f"/v1/agents/{agent_id}")
            registrar.delete_agent(agent_id)

    def wait_rounds(self, agent_id: str, count: int, *, timeout: float = 30.0) -> None:
        """Wait until the verifier has finished ``count`` more rounds of the agent."""
        seen, last = 0, self.status(agent_id)["last_round_at"]
        deadline = time.monotonic() + timeout
        while seen < count and time.monotonic() < deadline:
            current = self.status(agent_id)["last_round_at"]
            if current != last:
                seen, last = seen + 1, current
            time.sleep(0.05)
        assert seen >= count, f"only {seen} rounds of {agent_id} in {timeout:.0f} s"

    def wait_for_state(
        self, agent_id: str, state: str, *, timeout: float = 30.0
    ) -> dict[str, object]:
        """Poll until the agent is in ``state``; fail with its last status and events if not."""
        deadline = time.monotonic() + timeout
        status: dict[str, object] = {}
        while time.monotonic() < deadline:
            status = self.status(agent_id)
            if status["state"] == state:
                return status
            time.sleep(0.1)
        pytest.fail(
            f"agent {agent_id} not {state} after {timeout:.0f} s: {status}; "
            f"events: {self.events(agent_id)}"
        )


def verifier_settings(
    workdir: Path,
    redis_url: str,
    registrar: RunningRegistrar,
    *,
    tls_dir: Path | None = None,
    database_url: str | None = None,
    **extra: Any,  # noqa: ANN401  # any Settings field
) -> Settings:
    """Test settings: fast rounds (0.5 s), short timeouts, the verifier's client TLS in place;
    the database a SQLite file in ``workdir`` unless ``database_url`` is given. ``extra``
    overrides any of these (the cadence too)."""
    tls_dir = tls_dir or workdir / "verifier-tls"
    ensure_verifier_client_tls(tls_dir)
    cadence: dict[str, Any] = {
        "round_interval_seconds": 0.5,
        "agent_timeout_seconds": 2.0,
        "unreachable_backoff_max_seconds": 2.0,
    }
    return load_settings(
        database_url=database_url or f"sqlite:///{workdir / 'verifier.sqlite'}",
        redis_url=redis_url,
        registrar_url=registrar.url,
        registrar_api_key=registrar.reader_key,
        registrar_signing_key=registrar.signing_key,
        ek_ca_dir=registrar.trust_dir,
        verifier_tls_dir=tls_dir,
        verifier_keys_dir=workdir / "verifier-keys",
        **(cadence | extra),
    )


@contextmanager
def running_verifier(settings: Settings, workdir: Path) -> Iterator[RunningVerifier]:
    """The API in a thread and a Celery worker (+beat) subprocess, stopped at the end."""
    app = create_app(settings)
    try:
        with served(app, "verifier-api") as url, _celery_worker(settings, workdir):
            yield RunningVerifier(
                url=url,
                settings=settings,
                client_ca=settings.verifier_tls_dir / "client-ca.pem",
                api_key=issue_api_key(settings.database_url, Role.ADMIN, "tests-admin"),
            )
    finally:
        close_app(app)


def settings_environment(settings: Settings) -> dict[str, str]:
    """The ``GEOATTEST_*`` variables that rebuild ``settings`` in another process."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GEOATTEST_")}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        if name in ("api_key", "registrar_api_key", "keys_log_api_key", "webhook_secret"):
            secret = getattr(settings, name)
            value = secret.get_secret_value()
        env[f"GEOATTEST_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env


@contextmanager
def _celery_worker(settings: Settings, workdir: Path) -> Iterator[None]:
    """A Celery worker with beat in one process, stopped (SIGTERM, then SIGKILL) at the end."""
    worker = verifier_celery(
        "celery-worker",
        ["worker", "--beat", "--concurrency", "2"],
        settings_environment(settings),
        workdir,
    )
    worker.start()
    try:
        yield
    finally:
        worker.stop()


@dataclass(frozen=True)
class ServiceStack:
    """A registrar and a verifier (API, worker and beat) on one Redis, for real agents."""

    registrar: RunningRegistrar
    verifier: RunningVerifier


@contextmanager
def service_stack(
    work: Path,
    trusted: Sequence[Path],
    *,
    policies: Mapping[str, Mapping[str, object]] | None = None,
    **extra: Any,  # noqa: ANN401  # any Settings field
) -> Iterator[ServiceStack]:
    """redis-server, a registrar trusting the EK CA certificates ``trusted`` and a verifier
    (``verifier_settings`` plus ``extra``) with ``policies`` stored; all stopped at the end."""
    trust_dir = trust_dir_with(work / "ek-ca", trusted)
    with running_redis(work) as redis_url, running_registrar(work, trust_dir) as registrar:
        settings = verifier_settings(work, redis_url, registrar, **extra)
        with running_verifier(settings, work) as verifier:
            for name, document in (policies or {}).items():
                response = verifier.put_policy(name, document)
                assert response.status_code == 200, response.text
            yield ServiceStack(registrar=registrar, verifier=verifier)
