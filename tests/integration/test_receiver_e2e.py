"""The GNSS receiver identity end to end: a swtpm node enrols the receiver it reads (found by the
agent's own ``identify_receiver`` from a real capture), the registrar records and signs it, the
real verifier (API, Celery worker + beat, redis-server, SQLite) compares every round's signed
receiver with it. A swapped receiver is one ``agent_notice`` event under ``receiver = "record"``
and fails the location check under ``receiver = "require"``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.enrolment import ApiEndpoint, enrol
from agent.gnss.identify import identify_receiver
from agent.gnss.source import FileReplaySource
from agent.location import LocationProvider
from agent.tpm_device import DEFAULT_LOCATION_KEY_HANDLE, TpmDevice
from geoattest.dev.ima_emulator import boot_aggregate_digest
from geoattest.dev.swtpm import SwtpmCa, SwtpmInstance
from geofence import GnssReceiver, SourceKind
from geofence.restamp import time_of
from tests.integration.test_location_e2e import GeoNode as Node
from tests.paths import vector
from tests.support import MakeSwtpm
from tests.support.live_gnss import LiveReceiver, black_forest
from tests.support.redis_server import running_redis
from tests.support.registrar_server import running_registrar, trust_dir_with
from tests.support.swtpm_agent import start_node as start_swtpm_node
from tests.support.verifier_stack import ServiceStack as Stack
from tests.support.verifier_stack import running_verifier, verifier_settings

pytestmark = [pytest.mark.swtpm, pytest.mark.redis, pytest.mark.slow]

RECORD, REQUIRE = "receiver-record", "receiver-require"
ENROLLED_HW, SWAPPED_HW = "HW UBX-M80xx 00080000", "HW UBX-G70xx 00070000"


def _nmea(body: str) -> bytes:
    checksum = 0
    for byte in body.encode("ascii"):
        checksum ^= byte
    return f"${body}*{checksum:02X}".encode("ascii")


def swapped_receiver() -> list[list[bytes]]:
    """The same road in the Black Forest, read by another receiver: a u-blox 7 announcing
    itself in every epoch (as a receiver plugged in mid-run does, once)."""
    banner = _nmea(f"GNTXT,01,01,02,{SWAPPED_HW}")
    return [
        [banner, *[line for line in epoch if time_of(line) is not None]] for epoch in black_forest()
    ]


def _document(rule: str) -> dict[str, object]:
    boot_aggregate = boot_aggregate_digest({index: bytes(32) for index in range(10)})
    return {
        "boot_pcrs": {"sha256": {str(index): "00" * 32 for index in range(8)}},
        "ima_banks": ["sha256"],
        "runtime_policy": {
            "version": 1,
            "digests": {"boot_aggregate": ["sha256:" + boot_aggregate.hex()]},
        },
        "location": {
            "zones": ["DEU"],
            "thresholds": {"accepted_sources": ["file"]},
            "receiver": rule,
        },
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, test_ca: SwtpmCa) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("receiver-e2e")
    trust_dir = trust_dir_with(work / "ek-ca", test_ca.trust_store)
    zones = vector("zones/ne_110m_admin_0_countries.geojson")
    with running_redis(work) as redis_url, running_registrar(work, trust_dir) as registrar:
        settings = verifier_settings(
            work, redis_url, registrar, zones_file=zones, zones_repair=True
        )
        with running_verifier(settings, work) as verifier:
            for name, rule in ((RECORD, "record"), (REQUIRE, "require")):
                response = verifier.put_policy(name, _document(rule))
                assert response.status_code == 200, response.text
            yield Stack(registrar=registrar, verifier=verifier)


def enrolled_receiver(workdir: Path) -> GnssReceiver:
    """What ``agent enrol --gnss file:…`` finds: the capture read until its first fix."""
    capture = workdir / "black-forest.nmea"
    capture.write_bytes(b"\r\n".join(line for epoch in black_forest() for line in epoch))
    return identify_receiver(FileReplaySource(capture), device=str(capture), timeout_s=5)


@pytest.fixture
def swtpms() -> dict[str, SwtpmInstance]:
    """Each started node's swtpm, by agent id (to re-enrol it)."""
    return {}


@pytest.fixture
def start_node(
    stack: Stack,
    make_swtpm: MakeSwtpm,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    swtpms: dict[str, SwtpmInstance],
) -> Iterator[Callable[[str], Node]]:
    nodes: list[Node] = []

    def start(policy: str) -> Node:
        digest = hashlib.sha256(request.node.name.encode()).hexdigest()[:8]
        agent_id = f"rcv-{digest}-{len(nodes)}"
        workdir = tmp_path / f"n{len(nodes)}"
        workdir.mkdir()
        receiver = enrolled_receiver(workdir)
        swtpms[agent_id] = make_swtpm()
        provider = LocationProvider(
            None, None, DEFAULT_LOCATION_KEY_HANDLE, wait_for_fix_s=1.5, source_kind=SourceKind.FILE
        )
        started = start_swtpm_node(
            swtpms[agent_id],
            workdir,
            agent_id,
            client_ca=stack.verifier.client_ca,
            registrar=stack.registrar,
            location=provider,
            gnss_receiver=receiver,
        )
        node = Node(started, LiveReceiver(provider, black_forest()))
        nodes.append(node)
        response = stack.verifier.add_agent(agent_id, policy)
        assert response.status_code == 201, response.text
        return node

    yield start
    for node in nodes:
        node.stop()
    stack.verifier.forget(stack.registrar.client(), [node.agent_id for node in nodes])


def _receiver_events(stack: Stack, agent_id: str) -> list[dict[str, object]]:
    return [e for e in stack.verifier.events(agent_id) if e["reason"] == "gnss_receiver_changed"]


def _location_check(stack: Stack, agent_id: str, round_id: object) -> dict[str, object]:
    response = stack.verifier.get(f"/v1/agents/{agent_id}/rounds/{round_id}")
    assert response.status_code == 200, response.text
    checks = response.json()["record"]["checks"]
    return next(c for c in checks if c["check"] == "location")


def test_enrolment_records_the_receiver_the_node_reads(
    stack: Stack, start_node: Callable[[str], Node]
) -> None:
    """The registrar's signed record names the receiver, and the verifier, which compares it
    with every round's under ``require``, attests the honest node."""
    node = start_node(REQUIRE)
    client = stack.registrar.client()
    view = client.get_agent(node.agent_id)
    client.close()
    assert view.gnss_receiver is not None
    assert view.gnss_receiver.source == "file"
    assert ENROLLED_HW in view.gnss_receiver.texts
    assert view.gnss_receiver.device is not None
    assert view.gnss_receiver.device.endswith("black-forest.nmea")
    assert view.identity_statement is not None
    assert b"gnss_receiver_sha256" in view.identity_statement
    stack.verifier.wait_for_state(node.agent_id, "attested")
    stack.verifier.wait_rounds(node.agent_id, 3)
    assert stack.verifier.status(node.agent_id)["state"] == "attested"
    assert _receiver_events(stack, node.agent_id) == []


def test_a_swapped_receiver_is_one_event_under_record(
    stack: Stack, start_node: Callable[[str], Node]
) -> None:
    node = start_node(RECORD)
    stack.verifier.wait_for_state(node.agent_id, "attested")
    node.receiver.switch(swapped_receiver())
    deadline = time.monotonic() + 20
    while not _receiver_events(stack, node.agent_id) and time.monotonic() < deadline:
        time.sleep(0.3)
    events = _receiver_events(stack, node.agent_id)
    assert len(events) == 1, events
    event = events[0]
    assert event["type"] == "agent_notice"
    assert event["from_state"] == event["to_state"] == "attested"
    assert SWAPPED_HW in str(event["message"])
    check = _location_check(stack, node.agent_id, event["round_id"])
    assert check["verdict"] == "passed"
    assert check["reason"] == "gnss_receiver_changed"
    stack.verifier.wait_rounds(node.agent_id, 4)  # more rounds with the new receiver
    assert len(_receiver_events(stack, node.agent_id)) == 1  # one event per change, not per round
    assert stack.verifier.status(node.agent_id)["state"] == "attested"


def test_a_swapped_receiver_fails_location_under_require(
    stack: Stack, start_node: Callable[[str], Node]
) -> None:
    node = start_node(REQUIRE)
    stack.verifier.wait_for_state(node.agent_id, "attested")
    node.receiver.switch(swapped_receiver())
    failed = stack.verifier.wait_for_state(node.agent_id, "failed", timeout=20)
    assert failed["reason"] == "gnss_receiver_changed", failed
    assert SWAPPED_HW in str(failed["message"])


def test_an_operator_accepts_a_new_receiver_by_re_enrolling_and_refreshing(
    stack: Stack, start_node: Callable[[str], Node], swtpms: dict[str, SwtpmInstance]
) -> None:
    """The documented way to accept a replaced receiver: the node re-enrols with it (its TPM
    proves the request again), the operator refreshes the agent and re-admits it."""
    node = start_node(REQUIRE)
    stack.verifier.wait_for_state(node.agent_id, "attested")
    node.receiver.switch(swapped_receiver())
    stack.verifier.wait_for_state(node.agent_id, "failed", timeout=20)
    # What this agent now reads: the first banner and the new module's (the agent kept running).
    client = stack.registrar.client()
    before = client.get_agent(node.agent_id)
    assert before.gnss_receiver is not None
    assert before.agent_url is not None
    assert before.tls_certificate is not None
    endpoint = ApiEndpoint(url=before.agent_url, tls_certificate=before.tls_certificate)
    new = GnssReceiver(
        source=SourceKind.FILE, texts=(*before.gnss_receiver.texts, SWAPPED_HW), device="new"
    )
    with TpmDevice(swtpms[node.agent_id].tcti) as device:
        view = enrol(
            device,
            client,
            node.agent_id,
            endpoint=lambda _agent_id: endpoint,
            location_key_handle=DEFAULT_LOCATION_KEY_HANDLE,
            gnss_receiver=new,
        )
    client.close()
    assert view.gnss_receiver is not None
    assert SWAPPED_HW in view.gnss_receiver.texts
    assert stack.verifier.act(node.agent_id, "refresh").status_code == 200
    assert stack.verifier.act(node.agent_id, "readmit").status_code == 200
    stack.verifier.wait_for_state(node.agent_id, "attested", timeout=20)
    stack.verifier.wait_rounds(node.agent_id, 2)
    assert stack.verifier.status(node.agent_id)["state"] == "attested"
