"""Proof-of-Geofencing end to end: swtpm nodes whose GNSS receivers replay real captures live,
the agent's evidence API over mTLS, the registrar recording each node's location key, and the
real verifier (API, Celery worker + beat, redis-server, SQLite, Natural Earth country zones)
polling every 0.5 s with a policy that requires zone ``DEU``.

A capture from 2015 would be stale at verification time, so ``LiveReceiver`` replays it as a
receiver would emit it now: one epoch per second, each timed sentence (RMC, GGA, GNS, GST, ZDA,
GLL) re-stamped with the current UTC time and date and its checksum recomputed; positions,
satellites, DOPs and C/N0 stay as recorded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.enrolment import ApiEndpoint, enrol
from agent.evidence import EvidenceService
from agent.ima_source import ImaLogSource
from agent.location import LocationProvider
from agent.server import AgentServer, create_app, make_agent_server
from agent.tls import ensure_server_identity, server_ssl_context
from agent.tpm_device import DEFAULT_AK_HANDLE, DEFAULT_LOCATION_KEY_HANDLE, TpmDevice
from geoattest.dev.ima_emulator import ImaEmulator, boot_aggregate_digest
from geoattest.dev.swtpm import SwtpmCa, SwtpmInstance
from geofence import GnssReceiver, SourceKind
from geofence.nmea import split_lines
from geofence.restamp import epochs, restamped, time_of
from tests.paths import vector
from tests.support.redis_server import running_redis
from tests.support.registrar_server import RunningRegistrar, running_registrar, trust_dir_with
from tests.support.verifier_stack import RunningVerifier, running_verifier, verifier_settings

pytestmark = [pytest.mark.swtpm, pytest.mark.redis, pytest.mark.slow]

MakeSwtpm = Callable[..., SwtpmInstance]
POLICY = "geofenced-de"


# --- a live receiver from a capture ------------------------------------------------------------


class LiveReceiver:
    """Feeds a provider one epoch a second, restamped to now, going back and forth over the
    chosen epochs (an honest track: no jumps at the turn); ``switch`` changes the capture."""

    def __init__(self, provider: LocationProvider, epochs: Sequence[list[bytes]]) -> None:
        self._provider = provider
        self._epochs = list(epochs)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-gnss", daemon=True)
        self._thread.start()

    def switch(self, epochs: Sequence[list[bytes]]) -> None:
        with self._lock:
            self._epochs = list(epochs)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        step, direction = 0, 1
        while not self._stop.is_set():
            at = dt.datetime.now(dt.UTC)
            with self._lock:
                chosen = self._epochs
            step %= len(chosen)
            for line in chosen[step]:
                self._provider.feed(restamped(line, at))
            if not 0 <= step + direction < len(chosen):
                direction = -direction
            step += direction if len(chosen) > 1 else 0
            self._stop.wait(1.0 - (dt.datetime.now(dt.UTC) - at).total_seconds() % 1.0)


def black_forest() -> list[list[bytes]]:
    """NaviLock NL-8002U near Schramberg, DE: the five epochs of one stretch of road (the
    capture's next epoch is 20 minutes and 700 m later), with the receiver banner."""
    all_epochs = epochs(split_lines(vector("nmea/nl2008u.log").read_bytes()))
    banner = [line for line in all_epochs[0] if time_of(line) is None]
    moving = all_epochs[2:7]
    return [banner + moving[0], *moving[1:]]


def loire_valley() -> list[list[bytes]]:
    """ST Teseo LIV4F, static at La Ville-aux-Dames (Indre-et-Loire), FR."""
    return epochs(split_lines(vector("nmea/st-teseo-liv4f.log").read_bytes()))


# --- the stack and the nodes -------------------------------------------------------------------


@dataclass
class Stack:
    registrar: RunningRegistrar
    verifier: RunningVerifier


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, test_ca: SwtpmCa) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("location-e2e")
    trust_dir = trust_dir_with(work / "ek-ca", test_ca.trust_store)
    zones = vector("zones/ne_110m_admin_0_countries.geojson")  # Sudan needs repair
    with running_redis(work) as redis_url, running_registrar(work, trust_dir) as registrar:
        settings = verifier_settings(
            work, redis_url, registrar, zones_file=zones, zones_repair=True
        )
        with running_verifier(settings, work) as verifier:
            boot_aggregate = boot_aggregate_digest({index: bytes(32) for index in range(10)})
            document = {
                "boot_pcrs": {"sha256": {str(index): "00" * 32 for index in range(8)}},
                "ima_banks": ["sha256"],
                "runtime_policy": {
                    "version": 1,
                    "digests": {"boot_aggregate": ["sha256:" + boot_aggregate.hex()]},
                },
                "location": {"zones": ["DEU"], "thresholds": {"accepted_sources": ["file"]}},
            }
            response = verifier.put_policy(POLICY, document)
            assert response.status_code == 200, response.text
            yield Stack(registrar=registrar, verifier=verifier)


@dataclass
class Node:
    agent_id: str
    receiver: LiveReceiver
    server: AgentServer
    thread: threading.Thread
    services: list[EvidenceService] = field(default_factory=list)

    def stop(self) -> None:
        self.receiver.stop()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        for service in self.services:
            service.close()


def _start_node(
    stack: Stack,
    swtpm: SwtpmInstance,
    workdir: Path,
    agent_id: str,
    gnss: list[list[bytes]],
    *,
    receiver: GnssReceiver | None = None,
) -> Node:
    """A geofencing node: enrolled with its location key (and ``receiver``, when given), API
    serving, receiver running."""
    ima = ImaEmulator(swtpm.tcti, workdir / "ascii_runtime_measurements")
    ima.boot_aggregate()
    provider = LocationProvider(
        None, None, DEFAULT_LOCATION_KEY_HANDLE, wait_for_fix_s=1.5, source_kind=SourceKind.FILE
    )  # a replayed capture, as the local dev fleet runs: the policy must accept "file"
    service = EvidenceService(
        lambda: TpmDevice(swtpm.tcti),
        ImaLogSource(ima.log_path),
        ak_handle=DEFAULT_AK_HANDLE,
        location=provider,
        hold_connection=False,
    )
    identity = ensure_server_identity(workdir / "agent", agent_id, "127.0.0.1")
    context = server_ssl_context(identity.cert_path, identity.key_path, stack.verifier.client_ca)
    server = make_agent_server(create_app(service), context, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = ApiEndpoint(
        url=f"https://127.0.0.1:{server.server_port}", tls_certificate=identity.certificate_der
    )
    client = stack.registrar.client()
    with TpmDevice(swtpm.tcti) as device:
        view = enrol(
            device,
            client,
            agent_id,
            endpoint=lambda _agent_id: endpoint,
            location_key_handle=DEFAULT_LOCATION_KEY_HANDLE,
            gnss_receiver=receiver,
        )
    client.close()
    assert view.location_key_public is not None
    return Node(agent_id, LiveReceiver(provider, gnss), server, thread, [service])


@pytest.fixture
def start_node(
    stack: Stack, make_swtpm: MakeSwtpm, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[list[list[bytes]]], Node]]:
    nodes: list[Node] = []

    def start(gnss: list[list[bytes]]) -> Node:
        digest = hashlib.sha256(request.node.name.encode()).hexdigest()[:8]
        agent_id = f"geo-{digest}-{len(nodes)}"
        node = _start_node(stack, make_swtpm(), tmp_path / f"n{len(nodes)}", agent_id, gnss)
        nodes.append(node)
        response = stack.verifier.add_agent(agent_id, POLICY)
        assert response.status_code == 201, response.text
        return node

    yield start
    for node in nodes:
        node.stop()
    stack.verifier.forget(stack.registrar.client(), [node.agent_id for node in nodes])


# --- the tests ---------------------------------------------------------------------------------


def test_node_in_germany_stays_attested_then_a_teleport_to_france_fails(
    stack: Stack, start_node: Callable[[list[list[bytes]]], Node]
) -> None:
    node = start_node(black_forest())
    stack.verifier.wait_for_state(node.agent_id, "attested")
    stack.verifier.wait_rounds(node.agent_id, 4)
    status = stack.verifier.status(node.agent_id)
    assert status["state"] == "attested", status
    node.receiver.switch(loire_valley())  # 600 km in a second
    failed = stack.verifier.wait_for_state(node.agent_id, "failed", timeout=15)
    assert failed["reason"] == "location_implausible", failed
    assert "location_teleport" in str(failed["message"])


def test_node_in_france_fails_a_policy_that_requires_germany(
    stack: Stack, start_node: Callable[[list[list[bytes]]], Node]
) -> None:
    node = start_node(loire_valley())
    failed = stack.verifier.wait_for_state(node.agent_id, "failed", timeout=15)
    assert failed["reason"] == "location_outside_zone", failed
    assert "DEU" in str(failed["message"])
