"""Proof-of-Geofencing end to end: swtpm nodes whose GNSS receivers replay real captures live,
the agent's evidence API over mTLS, the registrar recording each node's location key, and the
real verifier (API, Celery worker + beat, redis-server, SQLite, Natural Earth country zones)
polling every 0.5 s with a policy that requires zone ``DEU``.

A capture from 2015 would be stale at verification time, so ``LiveReceiver``
(``tests.support.live_gnss``) replays it as a
receiver would emit it now: one epoch per second, each timed sentence (RMC, GGA, GNS, GST, ZDA,
GLL) re-stamped with the current UTC time and date and its checksum recomputed; positions,
satellites, DOPs and C/N0 stay as recorded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.location import LocationProvider
from agent.tpm_device import DEFAULT_LOCATION_KEY_HANDLE
from geoattest.dev.swtpm import SwtpmCa
from geofence import SourceKind
from tests.paths import vector
from tests.support import MakeSwtpm
from tests.support.live_gnss import LiveReceiver, black_forest, loire_valley
from tests.support.swtpm_agent import Node, start_node, swtpm_node_policy
from tests.support.verifier_stack import ServiceStack, service_stack

pytestmark = [pytest.mark.swtpm, pytest.mark.redis, pytest.mark.slow]

POLICY = "geofenced-de"


Stack = ServiceStack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, test_ca: SwtpmCa) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("location-e2e")
    zones = vector("zones/ne_110m_admin_0_countries.geojson")  # Sudan needs repair
    document = swtpm_node_policy(
        location={"zones": ["DEU"], "thresholds": {"accepted_sources": ["file"]}}
    )
    with service_stack(
        work, test_ca.trust_store, policies={POLICY: document}, zones_file=zones, zones_repair=True
    ) as running:
        yield running


@dataclass
class GeoNode:
    """A geofencing node (enrolled with its location key, API serving) and its live receiver."""

    node: Node
    receiver: LiveReceiver

    @property
    def agent_id(self) -> str:
        return self.node.agent_id

    def stop(self) -> None:
        self.receiver.stop()
        self.node.stop_api()


@pytest.fixture
def geo_node(
    stack: Stack, make_swtpm: MakeSwtpm, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[list[list[bytes]]], GeoNode]]:
    nodes: list[GeoNode] = []

    def start(gnss: list[list[bytes]]) -> GeoNode:
        digest = hashlib.sha256(request.node.name.encode()).hexdigest()[:8]
        agent_id = f"geo-{digest}-{len(nodes)}"
        provider = LocationProvider(
            None, None, DEFAULT_LOCATION_KEY_HANDLE, wait_for_fix_s=1.5, source_kind=SourceKind.FILE
        )  # a replayed capture, as the local dev fleet runs: the policy must accept "file"
        node = start_node(
            make_swtpm(),
            tmp_path / f"n{len(nodes)}",
            agent_id,
            client_ca=stack.verifier.client_ca,
            registrar=stack.registrar,
            location=provider,
        )
        started = GeoNode(node, LiveReceiver(provider, gnss))
        nodes.append(started)
        response = stack.verifier.add_agent(agent_id, POLICY)
        assert response.status_code == 201, response.text
        return started

    yield start
    for started in nodes:
        started.stop()
    stack.verifier.forget(stack.registrar.client(), [started.agent_id for started in nodes])


# --- the tests ---------------------------------------------------------------------------------


def test_node_in_germany_stays_attested_then_a_teleport_to_france_fails(
    stack: Stack, geo_node: Callable[[list[list[bytes]]], GeoNode]
) -> None:
    node = geo_node(black_forest())
    stack.verifier.wait_for_state(node.agent_id, "attested")
    stack.verifier.wait_rounds(node.agent_id, 4)
    status = stack.verifier.status(node.agent_id)
    assert status["state"] == "attested", status
    node.receiver.switch(loire_valley())  # 600 km in a second
    failed = stack.verifier.wait_for_state(node.agent_id, "failed", timeout=15)
    assert failed["reason"] == "location_implausible", failed
    assert "location_teleport" in str(failed["message"])


def test_node_in_france_fails_a_policy_that_requires_germany(
    stack: Stack, geo_node: Callable[[list[list[bytes]]], GeoNode]
) -> None:
    node = geo_node(loire_valley())
    failed = stack.verifier.wait_for_state(node.agent_id, "failed", timeout=15)
    assert failed["reason"] == "location_outside_zone", failed
    assert "DEU" in str(failed["message"])
