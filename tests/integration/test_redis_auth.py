"""The verifier refuses a Redis that serves clients without credentials (any local user could
otherwise set an agent's hot state to attested or hold its round lock)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from geoattest.dev.procs import free_port
from geoattest.errors import ConfigurationError
from tests.support.redis_server import require_redis
from verifier.storage.redis_auth import check_redis_requires_auth

pytestmark = pytest.mark.redis


@pytest.fixture
def open_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server with no password at all (what the verifier must refuse)."""
    port = free_port()
    process = subprocess.Popen(
        [require_redis(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    yield url
    process.terminate()
    process.wait(timeout=10)


def test_an_open_redis_is_refused(open_redis: str) -> None:
    with pytest.raises(ConfigurationError, match="without authentication"):
        check_redis_requires_auth(open_redis)
    # A password in the URL changes nothing: the server itself must demand one.
    host = open_redis.removeprefix("redis://")
    with pytest.raises(ConfigurationError, match="without authentication"):
        check_redis_requires_auth(f"redis://:guess@{host}")


def test_an_authenticated_redis_is_accepted(redis_url: str) -> None:
    assert "@" in redis_url  # the project's own launcher sets a password
    check_redis_requires_auth(redis_url)


def test_an_open_redis_only_with_the_explicit_setting(open_redis: str) -> None:
    check_redis_requires_auth(open_redis, allow_unauthenticated=True)
