"""Integration fixtures beyond the TPM ones of ``tests/conftest.py``: a real redis-server, a real
database (``database_url``: a fresh SQLite file, and a fresh database on the session's throwaway
PostgreSQL cluster), and a real registrar over HTTP on that database trusting the session's test
CA (``trust_dir``, ``registrar``, ``client``).

A test that takes ``database_url`` (directly or through ``registrar``) runs once per database:
``test_x[sqlite]`` and ``test_x[postgresql]``; ``-m "not postgresql"`` leaves PostgreSQL out.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from geoattest.dev.swtpm import SwtpmCa
from geoattest.registrar_client import RegistrarClient
from tests.support.postgres_server import PostgresServer, running_postgres
from tests.support.redis_server import running_redis
from tests.support.registrar_server import RunningRegistrar, running_registrar, trust_dir_with


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the session's redis-server (started here, no persistence)."""
    with running_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The session's Redis, emptied before each test."""
    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    return redis_server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL cluster (started on first use, about a second)."""
    with running_postgres() as server:
        yield server


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLAlchemy URL of an empty database of this test: a SQLite file, or a PostgreSQL database
    (created for the test, dropped after it)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'geoattest.sqlite'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    with server.database() as url:
        yield url


@pytest.fixture
def trust_dir(tmp_path: Path, test_ca: SwtpmCa) -> Path:
    return trust_dir_with(tmp_path / "ek-ca", test_ca.trust_store)


@pytest.fixture
def registrar(tmp_path: Path, trust_dir: Path, database_url: str) -> Iterator[RunningRegistrar]:
    with running_registrar(tmp_path, trust_dir, database_url=database_url) as running:
        yield running


@pytest.fixture
def client(registrar: RunningRegistrar) -> Iterator[RegistrarClient]:
    registrar_client = registrar.client()  # enrols (no key needed) and reads (admin key)
    yield registrar_client
    registrar_client.close()
