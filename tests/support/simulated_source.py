"""An ``EvidenceSource`` asking ``AgentSimulator``s in-process: the round runner's test seam.

Answers go through the same classification as the HTTPS client (``evidence_from_answer``), so a
simulator's malformed or refusing answer means to the runner exactly what it would over mTLS.
Tests may also make the source itself misbehave (``stall``, ``crash``) to drive the runner's
fault paths.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from geoattest.errors import AgentUnreachable
from geoattest.wire import EvidenceRequest, EvidenceResponse
from tests.support.agent_simulator import AgentSimulator
from verifier.engine.fetch import evidence_from_answer


class Answering(Protocol):
    """What the source asks: a simulator, or a wrapper speaking another protocol version."""

    @property
    def agent_id(self) -> str: ...

    def answer(self, body: bytes) -> tuple[int, bytes]: ...


def sim_url(agent_id: str) -> str:
    return f"https://{agent_id}.sim.invalid:9002"


@dataclass(frozen=True, slots=True)
class FetchHold:
    """An agent's next fetch, held (``SimulatedSource.hold``) until ``release``."""

    taken: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def wait_taken(self, timeout: float = 10.0) -> None:
        """Until the fetch waits here (its round holds the agent's lock by then)."""
        assert self.taken.wait(timeout), f"no fetch reached its hold in {timeout} s"

    def release(self) -> None:
        self.released.set()


class SimulatedSource:
    def __init__(self, sims: Iterable[AgentSimulator]) -> None:
        self.sims: dict[str, Answering] = {sim_url(sim.agent_id): sim for sim in sims}
        self.offline: set[str] = set()  # agent ids that do not answer
        self.stall: dict[str, float] = {}  # agent id -> seconds to wait before answering
        self._holds: dict[str, FetchHold] = {}  # agent id -> what its next fetch waits for
        self.crash: set[str] = set()  # agent ids whose fetch raises an unexpected error
        self.requests: list[tuple[str, EvidenceRequest]] = []
        self._lock = threading.Lock()

    def hold(self, agent_id: str) -> FetchHold:
        """Make the agent's next fetch (only) wait until released: a test that must order two
        rounds releases the first when it wants, whatever the load."""
        hold = FetchHold()
        with self._lock:
            self._holds[agent_id] = hold
        return hold

    def fetch_evidence(
        self, agent_url: str, tls_certificate: bytes, request: EvidenceRequest
    ) -> EvidenceResponse:
        sim = self.sims[agent_url]
        with self._lock:
            self.requests.append((sim.agent_id, request))
        if sim.agent_id in self.crash:
            raise RuntimeError("a bug in the fetch path")
        if sim.agent_id in self.offline:
            raise AgentUnreachable(f"agent at {agent_url} unreachable: connection refused")
        if sim.agent_id in self.stall:
            time.sleep(self.stall[sim.agent_id])
        with self._lock:
            hold = self._holds.pop(sim.agent_id, None)
        if hold is not None:
            hold.taken.set()
            if not hold.released.wait(timeout=60):
                raise AgentUnreachable(f"agent at {agent_url}: its test hold was never released")
        status, body = sim.answer(request.model_dump_json(exclude_defaults=True).encode())
        return evidence_from_answer(
            agent_url, status, body, asked_location=request.include_location
        )
