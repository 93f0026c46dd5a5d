"""A simulated fleet under a real verifier: N ``AgentSimulator``s behind the fleet server over mTLS,
enrolled at a real registrar, judged by the real verifier API and Celery worker (+beat) on a real
redis-server and SQLite file. End-to-end and fault tests take agents from it one at a time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.agent_simulator import AgentSimulator, make_simulators, policy_document
from tests.support.fleet_server import FleetServer, enrol_fleet, fleet_tls, serve_fleet
from tests.support.redis_server import running_redis
from tests.support.registrar_server import running_registrar
from tests.support.software_pki import make_ca
from tests.support.verifier_stack import RunningVerifier, running_verifier, verifier_settings

POLICY = "edge"


@dataclass
class SimulatedFleet:
    verifier: RunningVerifier
    sims: dict[str, AgentSimulator]
    server: FleetServer
    redis_url: str
    workdir: Path
    taken: set[str] = field(default_factory=set)
    located: tuple[str, ...] = ()  # enrolled with a location key; never handed out as attested

    def attested_agent(self, policy: str = POLICY) -> AgentSimulator:
        """A fresh simulated agent of the fleet, added to the verifier and attested."""
        agent_id = next(agent_id for agent_id in self.sims if agent_id not in self.taken)
        self.taken.add(agent_id)
        response = self.verifier.add_agent(agent_id, policy)
        assert response.status_code == 201, response.text
        self.verifier.wait_for_state(agent_id, "attested")
        return self.sims[agent_id]

    def serve_rounds(self, sim: AgentSimulator, count: int) -> list[dict[str, object]]:
        """Wait (at most 30 s) until the agent answered ``count`` more rounds; the verifier's
        view of it, polled meanwhile."""
        target = sim.served + count
        deadline = time.monotonic() + 30
        seen = []
        while sim.served < target:
            assert time.monotonic() < deadline, f"only {count - target + sim.served} of {count}"
            seen.append(self.verifier.status(sim.agent_id))
            time.sleep(0.05)
        return seen


@contextmanager
def simulated_fleet(
    work: Path,
    *,
    agents: int = 30,
    allowed: dict[str, bytes] | None = None,
    located: int = 0,
    **settings: Any,  # noqa: ANN401  # any Settings field
) -> Iterator[SimulatedFleet]:
    """``located``: how many of the ``agents`` (the last ones) are enrolled with a location key,
    for a test to give a GNSS source and a geofencing policy (``SimulatedFleet.located``)."""
    ca = make_ca()
    trust_dir = work / "ek-ca"
    trust_dir.mkdir()
    (trust_dir / "ca.pem").write_bytes(ca.pem)
    sims = make_simulators(agents, ca, prefix=work.name[:8] or "sim")
    tls = fleet_tls(work / "tls")
    with (
        running_redis(work) as redis_url,
        running_registrar(work, trust_dir) as registrar,
        serve_fleet(sims, ssl_context=tls.server_context) as server,
    ):
        located_ids = tuple(sim.agent_id for sim in sims[len(sims) - located :]) if located else ()
        enrol_fleet(
            registrar.url, sims, server, tls_certificate=tls.server_certificate_der,
            located=located_ids,
        )  # fmt: skip
        verifier_config = verifier_settings(
            work, redis_url, registrar, tls_dir=work / "tls" / "verifier", **settings
        )
        with running_verifier(verifier_config, work) as verifier:
            response = verifier.put_policy(POLICY, policy_document(sims[0], allowed))
            assert response.status_code == 200, response.text
            yield SimulatedFleet(
                verifier=verifier,
                sims={sim.agent_id: sim for sim in sims},
                server=server,
                redis_url=redis_url,
                workdir=work,
                taken=set(located_ids),
                located=located_ids,
            )
