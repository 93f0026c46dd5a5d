"""Integration fixtures beyond the TPM ones of ``tests/conftest.py``: a real redis-server, and a
real registrar over HTTP trusting the session's test CA (``trust_dir``, ``registrar``,
``client``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from geoattest.dev.swtpm import SwtpmCa
from geoattest.registrar_client import RegistrarClient
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


@pytest.fixture
def trust_dir(tmp_path: Path, test_ca: SwtpmCa) -> Path:
    return trust_dir_with(tmp_path / "ek-ca", test_ca.trust_store)


@pytest.fixture
def registrar(tmp_path: Path, trust_dir: Path) -> Iterator[RunningRegistrar]:
    with running_registrar(tmp_path, trust_dir) as running:
        yield running


@pytest.fixture
def client(registrar: RunningRegistrar) -> Iterator[RegistrarClient]:
    registrar_client = registrar.client()  # enrols (no key needed) and reads (admin key)
    yield registrar_client
    registrar_client.close()
