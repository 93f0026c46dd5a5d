"""A real Redis Sentinel deployment on loopback: a primary, a replica and three Sentinels (quorum
2), every one of them requiring a password, each on a free port in its own owner-only directory.

Three Sentinels, as in production, rather than one with quorum 1: a failover then needs two
Sentinels to agree the primary is down and a majority to elect the leader that promotes the
replica, which is the path production takes (and the one whose timing the test measures).

``SentinelGroup.kill_primary`` SIGKILLs the primary (no shutdown, no last write), and
``wait_for_failover`` waits until the Sentinels name the replica instead. The passwords live in
owner-only files that the verifier reads (``redis_password_file``,
``redis_sentinel_password_file``), never on a command line.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from geoattest.dev.procs import free_port, managed_process, port_accepts
from geoattest.private_files import create_private_file, ensure_private_dir
from tests.support.redis_server import require_redis

MASTER = "geoattest"
DOWN_AFTER_MS = 1000  # the primary is "subjectively down" after this long without an answer
FAILOVER_TIMEOUT_MS = 5000


@dataclass
class RedisNode:
    """One redis-server of the group (primary or replica); it can be SIGKILLed."""

    name: str
    directory: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    def kill(self) -> None:
        """SIGKILL: no shutdown, nothing more written or replicated."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@dataclass
class SentinelGroup:
    directory: Path
    password_file: Path  # the primary's and replica's requirepass (and masterauth)
    sentinel_password_file: Path  # the Sentinels' requirepass (and sentinel-pass)
    primary: RedisNode
    replica: RedisNode
    sentinel_ports: list[int]
    stack: ExitStack = field(default_factory=ExitStack)

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()

    @property
    def sentinel_password(self) -> str:
        return self.sentinel_password_file.read_text().strip()

    def settings(self) -> dict[str, object]:
        """The verifier settings that reach Redis through these Sentinels."""
        return {
            "redis_sentinels": tuple(f"127.0.0.1:{port}" for port in self.sentinel_ports),
            "redis_sentinel_master": MASTER,
            "redis_password_file": self.password_file,
            "redis_sentinel_password_file": self.sentinel_password_file,
        }

    def client(self, node: RedisNode) -> redis.Redis:
        return redis.Redis(port=node.port, password=self.password, socket_timeout=2)

    def named_primary(self) -> int | None:
        """The port the Sentinels' majority names as the primary now (None: no answer)."""
        ports = []
        for port in self.sentinel_ports:
            sentinel = redis.Redis(port=port, password=self.sentinel_password, socket_timeout=1)
            try:
                answer = sentinel.execute_command(  # type: ignore[no-untyped-call]  # unannotated in redis-py
                    "SENTINEL", "get-master-addr-by-name", MASTER
                )
                ports.append(int(answer[1]))
            except redis.RedisError:
                continue
            finally:
                sentinel.close()
        majority = [p for p in set(ports) if ports.count(p) >= 2]
        return majority[0] if majority else None

    def kill_primary(self) -> None:
        self.primary.kill()

    def wait_for_failover(self, timeout: float = 30.0) -> float:
        """Seconds until the Sentinels name the replica and it answers as a primary."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.named_primary() == self.replica.port and _role(self, self.replica) == "master":
                return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(f"no failover to port {self.replica.port} in {timeout:.0f} s")

    def wait_replicated(self, timeout: float = 30.0) -> None:
        """Until the replica is in sync and every Sentinel knows the others (a failover needs
        the quorum and a majority for the leader election)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.client(self.replica).info("replication")
            if info.get("master_link_status") == "up" and self._sentinels_met():
                return
            time.sleep(0.1)
        raise AssertionError("the replica or the Sentinels did not come up in time")

    def _sentinels_met(self) -> bool:
        for port in self.sentinel_ports:
            sentinel = redis.Redis(port=port, password=self.sentinel_password, socket_timeout=1)
            try:
                master = sentinel.execute_command("SENTINEL", "master", MASTER)  # type: ignore[no-untyped-call]  # unannotated in redis-py
                state = {_text(key): _text(value) for key, value in master.items()}
                if int(state["num-other-sentinels"]) < len(self.sentinel_ports) - 1:
                    return False
                if int(state["num-slaves"]) < 1:
                    return False
            finally:
                sentinel.close()
        return True


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _role(group: SentinelGroup, node: RedisNode) -> str | None:
    try:
        client = group.client(node)
        try:
            return str(client.info("replication")["role"])
        finally:
            client.close()
    except redis.RedisError:
        return None


def _node_config(node: RedisNode, password: str, primary_port: int | None) -> bytes:
    lines = [
        f"port {node.port}",
        "bind 127.0.0.1",
        f"dir {node.directory}",
        f"requirepass {password}",
        f"masterauth {password}",  # a primary that comes back as a replica needs it too
        'save ""',
        "appendonly no",
        "repl-diskless-sync yes",
        "repl-diskless-sync-delay 0",
    ]
    if primary_port is not None:
        lines.append(f"replicaof 127.0.0.1 {primary_port}")
    return ("\n".join(lines) + "\n").encode()


def _sentinel_config(
    port: int, directory: Path, primary_port: int, password: str, sentinel_password: str
) -> bytes:
    lines = [
        f"port {port}",
        "bind 127.0.0.1",
        f"dir {directory}",
        f"requirepass {sentinel_password}",
        f"sentinel sentinel-pass {sentinel_password}",  # Sentinels authenticate to each other
        f"sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2",
        f"sentinel auth-pass {MASTER} {password}",
        f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}",
        f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}",
        f"sentinel parallel-syncs {MASTER} 1",
    ]
    return ("\n".join(lines) + "\n").encode()


def require_sentinel() -> str:
    """Path of Debian's redis-sentinel; skips (fails on CI) when it is not installed."""
    binary = shutil.which("redis-sentinel")
    if binary is None:
        message = "redis-sentinel not installed (apt-get install redis-sentinel; deploy/test does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary


def _start(
    stack: ExitStack, name: str, argv: list[str], log: Path, port: int
) -> subprocess.Popen[bytes]:
    return stack.enter_context(
        managed_process(name, argv, log_path=log, ready=lambda: port_accepts(port))
    )


@contextmanager
def sentinel_group(
    workdir: Path, *, sentinels: int = 3, for_failover: bool = True
) -> Iterator[SentinelGroup]:
    """Start the primary, the replica (in sync) and ``sentinels`` Sentinels that see both (none:
    a test promotes the replica by hand, and no Sentinel turns it back); stop all.

    ``for_failover=False`` skips waiting until the replica is in sync and the Sentinels have met
    (up to 10-20 s of Sentinel hello/INFO periods): enough for a test that only asks the
    Sentinels which primary they monitor, which they answer from their configuration at once."""
    binary = require_redis()
    sentinel_binary = require_sentinel() if sentinels else binary
    directory = ensure_private_dir(workdir / "sentinel-redis")
    password_file = directory / "redis-password"
    sentinel_password_file = directory / "sentinel-password"
    password, sentinel_password = secrets.token_hex(24), secrets.token_hex(24)
    for path, text in ((password_file, password), (sentinel_password_file, sentinel_password)):
        create_private_file(path, text.encode() + b"\n")  # a fresh directory: never there yet
    nodes = [
        RedisNode(name=name, directory=ensure_private_dir(directory / name), port=free_port())
        for name in ("primary", "replica")
    ]
    primary, replica = nodes
    with ExitStack() as stack:
        for node, upstream in ((primary, None), (replica, primary.port)):
            config = node.directory / "redis.conf"
            create_private_file(config, _node_config(node, password, upstream))
            node.process = _start(stack, f"redis-{node.name}", [binary, str(config)],
                                  node.directory / "redis.log", node.port)  # fmt: skip
        ports = [free_port() for _ in range(sentinels)]
        for index, port in enumerate(ports):
            home = ensure_private_dir(directory / f"sentinel-{index}")
            config = home / "sentinel.conf"  # Sentinel rewrites it as it learns
            body = _sentinel_config(port, home, primary.port, password, sentinel_password)
            create_private_file(config, body)
            _start(stack, f"redis-sentinel-{index}", [sentinel_binary, str(config)],
                   home / "sentinel.log", port)  # fmt: skip
        group = SentinelGroup(
            directory=directory,
            password_file=password_file,
            sentinel_password_file=sentinel_password_file,
            primary=primary,
            replica=replica,
            sentinel_ports=ports,
        )
        if for_failover:
            group.wait_replicated()
        yield group
