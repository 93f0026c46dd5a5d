"""A local fleet on one machine, for quickstart and demos: real swtpm, registrar, enrolment.

Everything lives under one state directory and is reused by the next run:

    state/ca/           private TPM manufacturer CA (swtpm_localca)
    state/ek-ca/        the registrar's trust store (that CA's root and issuing certificates)
    state/tpm/<agent>/  each agent's swtpm state (EK certificate issued by the CA, persistent AK)
    state/registrar.sqlite, state/logs/
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

from agent.enrolment import enrol
from agent.tpm_device import TpmDevice
from geoattest.errors import ConfigurationError
from geoattest.registrar_client import RegistrarClient
from geoattest.swtpm import SwtpmCa, SwtpmInstance, free_port_pair
from geoattest.wire import AgentView

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_SECONDS = 30.0


@dataclass(slots=True)
class Fleet:
    """The running parts of a local fleet; ``stop`` ends them in reverse order."""

    state_dir: Path
    registrar_url: str
    agents: dict[str, SwtpmInstance] = field(default_factory=dict)


@contextmanager
def local_fleet(state_dir: Path, agent_ids: list[str], *, registrar_port: int) -> Iterator[Fleet]:
    """Start the CA, the registrar and one swtpm per agent; stop everything on exit."""
    state_dir = state_dir.resolve()
    (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        print(f"[1/3] TPM manufacturer CA in {state_dir / 'ca'}", flush=True)
        ca = SwtpmCa.create(state_dir / "ca")
        trust_dir = _trust_store_dir(state_dir / "ek-ca", ca)
        print(f"[2/3] registrar on 127.0.0.1:{registrar_port}, trusting {trust_dir}", flush=True)
        url = stack.enter_context(_registrar(state_dir, trust_dir, registrar_port))
        fleet = Fleet(state_dir=state_dir, registrar_url=url)
        print(f"[3/3] {len(agent_ids)} agent TPM(s) on swtpm", flush=True)
        for agent_id in agent_ids:
            fleet.agents[agent_id] = stack.enter_context(_agent_tpm(state_dir, ca, agent_id))
        yield fleet


def enrol_all(fleet: Fleet) -> list[AgentView]:
    """Enrol every agent of the fleet through the registrar's HTTP API (idempotent)."""
    client = RegistrarClient(fleet.registrar_url)
    views = []
    try:
        for agent_id, swtpm in fleet.agents.items():
            with TpmDevice(swtpm.tcti) as device:
                views.append(enrol(device, client, agent_id))
    finally:
        client.close()
    return views


def _trust_store_dir(directory: Path, ca: SwtpmCa) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for cert in ca.trust_store:
        shutil.copyfile(cert, directory / cert.name)
    return directory


@contextmanager
def _agent_tpm(state_dir: Path, ca: SwtpmCa, agent_id: str) -> Iterator[SwtpmInstance]:
    tpm_dir = state_dir / "tpm" / agent_id
    if SwtpmInstance.is_manufactured(tpm_dir):
        instance = SwtpmInstance(tpm_dir)
    else:
        print(f"      manufacturing TPM for {agent_id} (EK certificate from the CA)", flush=True)
        instance = SwtpmInstance.setup(tpm_dir, ca)
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@contextmanager
def _registrar(state_dir: Path, trust_dir: Path, port: int) -> Iterator[str]:
    log_path = state_dir / "logs" / "registrar.log"
    argv = [
        sys.executable, "-m", "geoattest", "registrar", "serve",
        "--ek-ca", str(trust_dir),
        "--port", str(port),
        "--db", f"sqlite:///{state_dir / 'registrar.sqlite'}",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT)  # noqa: S603  # our own interpreter and arguments
    try:
        _wait_healthy(url, process, log_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigurationError(
                f"registrar exited with status {process.returncode}; see {log_path}"
            )
        try:
            if requests.get(f"{url}/v1/healthz", timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise ConfigurationError(
        f"registrar not healthy after {STARTUP_TIMEOUT_SECONDS:.0f} s; see {log_path}"
    )


def pick_port(preferred: int) -> int:
    """``preferred`` when free, else any free loopback port (a second fleet must not collide)."""
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port_pair()
