"""A real redis-server on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis


def require_redis() -> str:
    """Path of redis-server; skips (fails on CI) when it is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server not installed (apt-get install redis-server; deploy/test does it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """A redis-server on a fixed loopback port that a test can stop and start again (the same
    port, the same directory): with ``persistent`` it keeps an append-only file (``appendonly
    yes``, fsync every write) and comes back with its data; without, it comes back empty."""

    def __init__(self, workdir: Path, *, persistent: bool = False) -> None:
        self.binary = require_redis()
        self.workdir = workdir
        self.persistent = persistent
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = workdir / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.persistent
            else ["--appendonly", "no"]
        )
        self._process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             *persistence, "--dir", str(self.workdir), "--logfile", str(self.log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:  # BusyLoadingError too: still reading its file
                    if self._process.poll() is not None or time.monotonic() > deadline:
                        text = self.log.read_text() if self.log.exists() else ""
                        pytest.fail(f"redis-server did not start: {text[-2000:]}")
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server: SIGTERM (it writes nothing more: no RDB saves are configured) or,
        with ``kill``, SIGKILL (a crash)."""
        if self._process is None:
            return
        if kill:
            self._process.kill()
        else:
            self._process.terminate()
        self._process.wait(timeout=10)
        self._process = None

    def restart(self, *, down_for: float = 0.0, kill: bool = False) -> None:
        self.stop(kill=kill)
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


@contextmanager
def running_redis(workdir: Path) -> Iterator[str]:
    """Start redis-server (no persistence) and yield its URL; stopped at the end of the block."""
    with running_redis_server(workdir) as server:
        yield server.url
