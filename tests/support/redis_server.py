"""A real redis-server for tests and benchmarks: the dev tooling's own launcher (password from an
owner-only file, loopback, a free port), skipped or failed when redis-server is missing."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from geoattest.dev.procs import free_port, redis_server


def require_redis() -> str:
    """Path of redis-server; skips (fails on CI) when it is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server not installed (apt-get install redis-server; deploy/test does it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary


@contextmanager
def running_redis(workdir: Path, *, persistent: bool = False) -> Iterator[str]:
    """Start an authenticated redis-server and yield its URL (with the password)."""
    require_redis()
    with redis_server(workdir / "redis", free_port(), persistent=persistent) as url:
        client = redis.Redis.from_url(url)
        try:
            client.ping()
        finally:
            client.close()
        yield url
