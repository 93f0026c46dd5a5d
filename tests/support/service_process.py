"""A service process a test can kill and start again: ``geoattest verifier serve|worker|beat``
with the settings in its environment, its output appended to one log file across restarts.

``verifier_api`` and ``verifier_celery`` are the launchers every suite and benchmark uses for the
verifier's API and its Celery worker or beat (ready when healthz answers, when Celery says so).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from geoattest.dev.procs import http_ok

READY_TIMEOUT = 60.0


class ServiceProcess:
    """``python -m geoattest <argv>``; ``ready(log_bytes)`` says when a start has finished."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path,
        ready: Callable[[bytes], bool],
    ) -> None:
        self.name = name
        self.argv = [sys.executable, "-m", "geoattest", *argv]
        self.env = dict(env)
        self.log_path = log_path
        self.cwd = cwd
        self._ready = ready
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not running"
        return self.process.pid

    def start(self) -> None:
        """Start and wait until ready (new log output only: a restart is not ready from the old
        lines). Fails the test with the log's tail when it exits or is slow."""
        offset = self.log_size()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while not self._ready(self._log_since(offset)):
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited ({self.process.returncode}): {self.tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} not ready in {READY_TIMEOUT:.0f} s: {self.tail()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the whole process group's leader and wait (a crash: no cleanup runs)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        """SIGTERM (an orderly stop), then SIGKILL after 15 s."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def children(self) -> list[int]:
        """Pids of the direct children (a Celery worker's pool processes), whichever of its
        threads forked them (billiard's supervisor thread forks the replacements)."""
        pids: set[int] = set()
        for task in Path(f"/proc/{self.pid}/task").glob("*"):
            try:
                pids.update(int(pid) for pid in (task / "children").read_text().split())
            except OSError:
                continue
        return sorted(pids)

    def tail(self, size: int = 3000) -> str:
        return self._log_since(max(0, self.log_size() - size)).decode(errors="replace")

    def log_size(self) -> int:
        """The log's length now (an offset for ``log_since``)."""
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, offset: int) -> str:
        """What the process wrote after ``offset``."""
        return self._log_since(offset).decode(errors="replace")

    def _log_since(self, offset: int) -> bytes:
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                return log.read()
        except OSError:
            return b""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def verifier_api(
    env: Mapping[str, str], work: Path, port: int, *, name: str = "verifier-api"
) -> ServiceProcess:
    """``geoattest verifier serve`` on ``port`` (as ``env`` says), ready when healthz answers;
    its log is ``work/<name>.log`` (``api.log`` for the default name)."""
    healthz = http_ok(f"http://127.0.0.1:{port}/v1/healthz")
    log = "api.log" if name == "verifier-api" else f"{name}.log"
    return ServiceProcess(
        name, ["verifier", "serve"], env=env, log_path=work / log, cwd=work,
        ready=lambda _log: healthz(),
    )  # fmt: skip


def verifier_celery(
    name: str, argv: Sequence[str], env: Mapping[str, str], work: Path
) -> ServiceProcess:
    """``geoattest verifier worker|beat <argv...>``, ready when Celery logs that it is (``ready.``
    for a worker, also with ``--beat``; ``beat: Starting`` for beat alone)."""
    marker = b"ready." if argv[0] == "worker" else b"beat: Starting"
    return ServiceProcess(
        name, ["verifier", *argv], env=env, log_path=work / f"{name}.log", cwd=work,
        ready=lambda log: marker in log,
    )  # fmt: skip
