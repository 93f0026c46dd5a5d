"""What the fleet benchmarks' verifier processes share: the EK trust store of the simulated
fleet's CA, the verifier's database (a SQLite file or a throwaway PostgreSQL one), its settings
on the benchmark's registrar, Redis and database, and adding the enrolled agents to it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from geoattest.settings import Settings, load_settings
from tests.support.access import bearer
from tests.support.postgres_server import running_postgres
from tests.support.registrar_server import RunningRegistrar
from tests.support.software_pki import SoftwareCa

__all__ = ["add_agents", "ek_trust_dir", "verifier_settings"]


def ek_trust_dir(work: Path, ca: SoftwareCa) -> Path:
    """``work/ek-ca`` holding the simulated TPMs' manufacturer CA."""
    trust = work / "ek-ca"
    trust.mkdir()
    (trust / "ca.pem").write_bytes(ca.pem)
    return trust


def verifier_settings(
    work: Path,
    registrar: RunningRegistrar,
    *,
    redis_url: str,
    database_url: str,
    port: int,
    interval: float,
    **extra: Any,  # noqa: ANN401  # more settings, as load_settings takes them
) -> Settings:
    """The verifier's settings: TLS and keys under ``work``, the API on ``port``."""
    return load_settings(
        database_url=database_url,
        redis_url=redis_url,
        registrar_url=registrar.url,
        registrar_api_key=registrar.reader_key,
        registrar_signing_key=registrar.signing_key,
        ek_ca_dir=registrar.trust_dir,
        verifier_tls_dir=work / "tls" / "verifier",
        verifier_keys_dir=work / "keys",
        verifier_port=port,
        round_interval_seconds=interval,
        **extra,
    )


def add_agents(
    api_url: str, api_key: str, agent_ids: Sequence[str], *, policy: str, mode: str = "pull"
) -> None:
    """``POST /v1/agents/<id>`` for each enrolled agent, four at a time."""

    def add(agent_id: str) -> None:
        response = requests.post(
            f"{api_url}/v1/agents/{agent_id}",
            json={"policy": policy, "mode": mode},
            headers=bearer(api_key),
            timeout=60,
        )
        if response.status_code != 201:
            raise RuntimeError(f"adding {agent_id}: {response.status_code} {response.text}")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(add, agent_ids))


@contextmanager
def verifier_database(work: Path, kind: str) -> Iterator[str]:
    """The verifier's database URL: a SQLite file, or a throwaway PostgreSQL cluster's."""
    if kind == "sqlite":
        yield f"sqlite:///{work / 'verifier.sqlite'}"
        return
    with running_postgres() as server, server.database() as url:
        yield url
