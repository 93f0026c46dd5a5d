"""Shared helpers of the swtpm tooling: binaries, ports, subprocess runs, process liveness."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from geoattest.errors import ConfigurationError

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
_APT_PACKAGE = {"swtpm": "swtpm", "swtpm_setup": "swtpm-tools", "swtpm_localca": "swtpm-tools"}
SETUP_TIMEOUT_S = 120.0
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


def require_binary(name: str) -> str:
    """Path of an swtpm tool; raises ConfigurationError naming the apt package if absent."""
    path = shutil.which(name)
    if path is None:
        package = _APT_PACKAGE.get(name, name)
        raise ConfigurationError(
            f"{name} not found on PATH: install the Debian package {package} "
            f"(apt-get install {package})"
        )
    return path


def free_port_pair(host: str = LOOPBACK, *, attempts: int = 50) -> int:
    """A port P such that P and P+1 were both free on ``host`` a moment ago (server, control).

    Another process may still take them before swtpm binds; ``SwtpmInstance.start`` retries with a
    new pair when it chose the port itself. Raises ConfigurationError when no pair is found.
    """
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as first:
            first.bind((host, 0))
            port = int(first.getsockname()[1])
            if port >= 65535:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as second:
                try:
                    second.bind((host, port + 1))
                except OSError:
                    continue
        return port
    raise ConfigurationError(f"no free port pair found on {host} after {attempts} attempts")


def run_tool(argv: list[str], what: str) -> None:
    """Run a tool to completion; raises ConfigurationError with its output when it fails."""
    logger.debug("running %s", " ".join(argv))
    done = subprocess.run(  # noqa: S603 - argv is built from fixed tool paths and our own paths
        argv, capture_output=True, text=True, timeout=SETUP_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-2000:]
        raise ConfigurationError(f"{what} failed (exit {done.returncode}): {output}")


def write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


class PortBusy(Exception):
    """swtpm could not bind its ports (internal: start() retries with another pair)."""


def tail(path: Path, limit: int = 1500) -> str:
    """The last ``limit`` bytes of a log file as text ("" when it does not exist)."""
    try:
        return path.read_bytes()[-limit:].decode(errors="replace").strip()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped by init) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rpartition(")")[2].split()[:1]
    return state not in (["Z"], ["X"])


def wait_for_exit(pid: int) -> None:
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.01)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
