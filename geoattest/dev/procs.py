"""Child processes of the local fleet: started with a log file, awaited until ready, stopped."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from geoattest.errors import ConfigurationError
from geoattest.private_files import create_private_file, ensure_private_dir, load_or_create_secret

GEOATTEST = (sys.executable, "-m", "geoattest")
READY_TIMEOUT_SECONDS = 60.0


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports. Two ``free_port()`` calls in a row may return the same
    one (the kernel hands out the port the first probe just released), so the probes are all
    held open until every port is chosen."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return requests.get(url, timeout=1).ok
        except requests.RequestException:
            return False

    return check


def geoattest_env(values: Mapping[str, str]) -> dict[str, str]:
    """This environment without any ``GEOATTEST_*`` of the caller, plus ``values``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GEOATTEST_")}
    env.update(values)
    return env


@dataclass(frozen=True)
class ProcessSpec:
    """A child process of the fleet: what it runs, where it logs and when it is ready."""

    name: str
    argv: Sequence[str]
    log_path: Path
    ready: Callable[[], bool]
    env: Mapping[str, str] | None = None


@contextmanager
def managed_process(
    name: str,
    argv: Sequence[str],
    *,
    log_path: Path,
    ready: Callable[[], bool],
    env: Mapping[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` with output to ``log_path`` until the block ends; wait until ``ready()``.

    Raises ``ConfigurationError`` (naming the log) when it exits or is not ready in time.
    """
    with managed_processes([ProcessSpec(name, argv, log_path, ready, env)]) as (process,):
        yield process


@contextmanager
def managed_processes(specs: Sequence[ProcessSpec]) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start every process of ``specs`` at once, then wait until each is ready (their start-up
    overlaps: most of it is Python importing); stop them in reverse order when the block ends.

    Raises ``ConfigurationError`` (naming the log) when one exits or is not ready in time.
    """
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for spec in specs:
            spec.log_path.parent.mkdir(parents=True, exist_ok=True)
            with spec.log_path.open("ab") as log:
                processes.append(
                    subprocess.Popen(  # noqa: S603  # our own argv, no shell
                        list(spec.argv),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=dict(spec.env) if spec.env else None,
                    )
                )
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        for spec, process in zip(specs, processes, strict=True):
            _await_ready(spec, process, deadline)
        yield processes
    finally:
        for process in reversed(processes):
            _stop(process)


def _await_ready(spec: ProcessSpec, process: subprocess.Popen[bytes], deadline: float) -> None:
    while not spec.ready():
        if process.poll() is not None:
            raise ConfigurationError(
                f"{spec.name} exited with {process.returncode}; see {spec.log_path}"
            )
        if time.monotonic() > deadline:
            limit = f"{READY_TIMEOUT_SECONDS:.0f} s"
            raise ConfigurationError(f"{spec.name} not ready in {limit}; see {spec.log_path}")
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def redis_server(directory: Path, port: int, *, persistent: bool = False) -> Iterator[str]:
    """A private redis-server on loopback that requires a password; yields its URL.

    The password is made once and kept owner-only in ``directory/password``; the server reads it
    from an owner-only config file (never from its command line, which any local user can see in
    ``ps``). ``persistent`` turns on the append-only file (``appendonly.aof`` in ``directory``).
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise ConfigurationError("redis-server not found: apt-get install redis-server")
    ensure_private_dir(directory)
    password = load_or_create_secret(directory / "password", 24).hex()
    config = directory / "redis.conf"
    config.unlink(missing_ok=True)
    create_private_file(
        config,
        "\n".join(
            [
                f"port {port}",
                "bind 127.0.0.1",
                f"dir {directory}",
                f"requirepass {password}",
                'save ""',
                f"appendonly {'yes' if persistent else 'no'}",
                "",
            ]
        ).encode(),
    )
    with managed_process(
        "redis-server",
        [binary, str(config)],
        log_path=directory / "redis.log",
        ready=lambda: port_accepts(port),
    ):
        yield f"redis://:{password}@127.0.0.1:{port}/0"
