"""A real redis-server for tests and benchmarks: the dev tooling's own launcher (password from an
owner-only file, loopback, a free port), skipped or failed when redis-server is missing.
``RedisServer`` is the same server for fault tests: stopped and started again on its port."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import redis

from geoattest.dev.procs import free_port, redis_server
from geoattest.private_files import ensure_private_dir, load_or_create_secret


def require_redis() -> str:
    """Path of redis-server; skips (fails on CI) when it is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server not installed (apt-get install redis-server; deploy/test does it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary


def _wait_for_ping(url: str, timeout: float = 10.0) -> None:
    """Until the server answers (it may still be loading its append-only file)."""
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:  # BusyLoadingError is one too
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        client.close()


@contextmanager
def running_redis(workdir: Path, *, persistent: bool = False) -> Iterator[str]:
    """Start an authenticated redis-server and yield its URL (with the password)."""
    require_redis()
    with redis_server(workdir / "redis", free_port(), persistent=persistent) as url:
        _wait_for_ping(url)
        yield url


class RedisServer:
    """An authenticated redis-server in ``workdir/redis`` on a fixed loopback port that a test can
    stop and start again (same port, same password, same directory): with ``persistent`` it
    keeps an append-only file and comes back with its data; without, it comes back empty.

    ``url`` is known before the first start (a server that is not running is a dead Redis)."""

    def __init__(self, workdir: Path, *, persistent: bool = False) -> None:
        require_redis()
        self.directory = ensure_private_dir(workdir / "redis")
        self.persistent = persistent
        self.port = free_port()
        password = load_or_create_secret(self.directory / "password", 24).hex()
        self.url = f"redis://:{password}@127.0.0.1:{self.port}/0"
        self._running: ExitStack | None = None

    def start(self) -> None:
        stack = ExitStack()
        url = stack.enter_context(
            redis_server(self.directory, self.port, persistent=self.persistent)
        )
        self._running = stack
        assert url == self.url, "the password or port changed across a restart"
        _wait_for_ping(url)

    def stop(self) -> None:
        """SIGTERM: it writes nothing more (no RDB saves are configured)."""
        if self._running is not None:
            self._running.close()
            self._running = None

    def restart(self, *, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


@contextmanager
def running_redis_server(workdir: Path, *, persistent: bool = False) -> Iterator[RedisServer]:
    """A started ``RedisServer`` for the block; stopped at the end."""
    server = RedisServer(workdir, persistent=persistent)
    server.start()
    try:
        yield server
    finally:
        server.stop()
