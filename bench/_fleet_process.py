"""The simulated fleet in its own process, driven by the fleet benchmark over a pipe.

The simulators' quoting and the fleet server's TLS would otherwise share a GIL with the benchmark's
bookkeeping; in their own process they compete with the verifier only for the cores, which is what
a real fleet's load on a verifier box looks like from the verifier's side (minus the network).

The child records the time of every evidence request it serves, per agent: that is when the
verifier's round for that agent fetched its evidence, the clock the late-round figures use.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.agent_simulator import AgentSimulator, policy_document
from tests.support.fleet_server import FleetServer, enrol_fleet, fleet_tls
from tests.support.software_pki import SoftwareCa

__all__ = ["FleetProcess", "FleetSpec"]

# Files every simulated node measured after boot (all allowed by the benchmark's policy), so the
# first round of each agent replays a real log and later rounds see it grow by nothing.
BASELINE_FILES = {f"/usr/lib/geoattest-sim/lib{n:02d}.so": f"lib{n}".encode() for n in range(20)}
TAMPER_PATH = "/tmp/bench-tamper"  # noqa: S108  # a path in a simulated IMA log, not a file


@dataclass(frozen=True, slots=True)
class FleetSpec:
    ca_key_pem: bytes
    ca_cert_pem: bytes
    tls_dir: Path  # fleet server identity; ``tls_dir / "verifier"`` the verifier's client TLS
    registrar_url: str
    prefix: str = "fleet"


class _Recorder:
    """Evidence request times per agent, from the last ``reset``."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}

    def record(self, agent_id: str) -> None:
        self.times.setdefault(agent_id, []).append(time.time())

    def reset(self) -> None:
        self.times = {}


def _new_simulator(agent_id: str, ca: SoftwareCa) -> AgentSimulator:
    sim = AgentSimulator(agent_id, ca)
    for path, content in BASELINE_FILES.items():
        sim.measure(path, content=content)
    return sim


def _serve(conn: Connection, spec: FleetSpec) -> None:  # pragma: no cover - child process
    key = serialization.load_pem_private_key(spec.ca_key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError("the EK CA key must be an EC key")
    ca = SoftwareCa(key=key, certificate=x509.load_pem_x509_certificate(spec.ca_cert_pem))
    tls = fleet_tls(spec.tls_dir)
    server = FleetServer([], ssl_context=tls.server_context)
    recorder = _Recorder()
    server.on_evidence = recorder.record
    sims: list[AgentSimulator] = []
    with server:
        conn.send(server.base_url)
        while True:
            command, argument = conn.recv()
            if command == "stop":
                conn.send(None)
                return
            handler = _COMMANDS[command]
            conn.send(
                handler(
                    _Child(server, recorder, sims, ca, tls.server_certificate_der, spec), argument
                )
            )


@dataclass(slots=True)
class _Child:
    server: FleetServer
    recorder: _Recorder
    sims: list[AgentSimulator]
    ca: SoftwareCa
    certificate_der: bytes
    spec: FleetSpec


def _grow(child: _Child, total: object) -> tuple[list[str], dict[str, object], float]:
    """Create and enrol simulators up to ``total``; (new agent ids, policy, seconds taken)."""
    started = time.perf_counter()
    assert isinstance(total, int)
    first = len(child.sims)
    new = [_new_simulator(f"{child.spec.prefix}-{i:05d}", child.ca) for i in range(first, total)]
    child.server.add(new)
    enrol_fleet(child.spec.registrar_url, new, child.server, tls_certificate=child.certificate_der)
    child.sims.extend(new)
    return (
        [sim.agent_id for sim in new],
        policy_document(child.sims[0]),
        time.perf_counter() - started,
    )


def _mark(child: _Child, _argument: object) -> float:
    child.server.call(child.recorder.reset)
    return time.time()


def _times(child: _Child, _argument: object) -> dict[str, list[float]]:
    return child.server.call(lambda: {k: list(v) for k, v in child.recorder.times.items()})


def _tamper(child: _Child, agent_id: object) -> float:
    """The node runs a file its policy does not allow; returns when (wall clock)."""
    sim = next(sim for sim in child.sims if sim.agent_id == agent_id)

    def tamper() -> float:
        sim.measure(TAMPER_PATH, content=hashlib.sha256(str(agent_id).encode()).digest())
        return time.time()

    return child.server.call(tamper)


def _heal(child: _Child, agent_ids: object) -> None:
    """Tampered nodes are cleaned: a fresh boot with the baseline files (for re-admission)."""
    assert isinstance(agent_ids, list)
    wanted = set(agent_ids)

    def heal() -> None:
        for sim in child.sims:
            if sim.agent_id in wanted:
                sim.reboot()
                for path, content in BASELINE_FILES.items():
                    sim.measure(path, content=content)

    child.server.call(heal)


_COMMANDS: Mapping[str, Callable[[_Child, object], object]] = {
    "grow": _grow,
    "mark": _mark,
    "times": _times,
    "tamper": _tamper,
    "heal": _heal,
}


class FleetProcess:
    """The parent's handle on the fleet process (``spawn``: no inherited sockets or threads)."""

    def __init__(self, spec: FleetSpec) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self.process = context.Process(target=_serve, args=(child_conn, spec), name="fleet-sim")
        self.process.start()
        child_conn.close()
        if not self._conn.poll(60):
            raise RuntimeError("fleet process did not start")
        self.base_url: str = self._conn.recv()

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def _ask(self, command: str, argument: object = None, timeout: float = 600.0) -> object:
        self._conn.send((command, argument))
        if not self._conn.poll(timeout):
            raise RuntimeError(f"fleet process did not answer {command!r} in {timeout:.0f} s")
        return self._conn.recv()

    def grow(self, total: int) -> tuple[list[str], dict[str, object], float]:
        """Enrol simulators up to ``total``: (new agent ids, policy document, seconds)."""
        answer = self._ask("grow", total)
        assert isinstance(answer, tuple)
        return answer

    def mark(self) -> float:
        """Forget recorded request times; returns the wall-clock time of the mark."""
        answer = self._ask("mark")
        assert isinstance(answer, float)
        return answer

    def times(self) -> dict[str, list[float]]:
        answer = self._ask("times")
        assert isinstance(answer, dict)
        return answer

    def tamper(self, agent_id: str) -> float:
        answer = self._ask("tamper", agent_id)
        assert isinstance(answer, float)
        return answer

    def heal(self, agent_ids: list[str]) -> None:
        self._ask("heal", agent_ids)

    def stop(self) -> None:
        if self.process.is_alive():
            try:
                self._ask("stop", timeout=30)
            except (RuntimeError, OSError, EOFError):
                self.process.terminate()
        self.process.join(timeout=30)
        self._conn.close()
