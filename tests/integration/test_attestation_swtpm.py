"""Continuous attestation of real agents: swtpm, the agent's evidence API over mTLS, an IMA log
written like a kernel would (PCR 10 extended in the swtpm), and the real verifier (API, Celery
worker + beat, redis-server, SQLite) polling every 0.5 s."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.tpm_device import TpmDevice
from geoattest.dev.swtpm import SwtpmCa
from tests.support import MakeSwtpm
from tests.support.swtpm_agent import Node, sha256_of, start_node, swtpm_node_policy
from tests.support.verifier_stack import ServiceStack, service_stack

pytestmark = [pytest.mark.swtpm, pytest.mark.redis, pytest.mark.slow]

ALLOWED = {"/usr/bin/bash": b"bash", "/usr/sbin/sshd": b"sshd"}


Stack = ServiceStack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, test_ca: SwtpmCa) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("swtpm-attestation")
    policies = {"swtpm-edge": swtpm_node_policy(sha256_of(ALLOWED))}
    with service_stack(work, test_ca.trust_store, policies=policies) as running:
        yield running


def _node(stack: Stack, make_swtpm: MakeSwtpm, tmp_path: Path, agent_id: str) -> Node:
    node = start_node(
        make_swtpm(),
        tmp_path,
        agent_id,
        client_ca=stack.verifier.client_ca,
        registrar=stack.registrar,
    )
    response = stack.verifier.add_agent(agent_id, "swtpm-edge")
    assert response.status_code == 201, response.text
    stack.verifier.wait_for_state(agent_id, "attested")
    return node


@pytest.fixture
def node_factory(
    stack: Stack, make_swtpm: MakeSwtpm, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[], Node]]:
    nodes: list[Node] = []

    def make() -> Node:
        agent_id = f"{request.node.name[5:40].replace('_', '-')}-{len(nodes)}"
        node = _node(stack, make_swtpm, tmp_path / f"n{len(nodes)}", agent_id)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.stop_api()
    stack.verifier.forget(stack.registrar.client(), [node.agent_id for node in nodes])


def test_real_agent_stays_attested_then_fails_on_an_unknown_executable(
    stack: Stack, node_factory: Callable[[], Node]
) -> None:
    node = node_factory()
    node.ima.measure("/usr/bin/bash", ALLOWED["/usr/bin/bash"])
    node.ima.measure("/usr/sbin/sshd", ALLOWED["/usr/sbin/sshd"])
    stack.verifier.wait_rounds(node.agent_id, 3)
    status = stack.verifier.status(node.agent_id)
    assert status["state"] == "attested"
    assert status["ima_entries_verified"] == 3
    node.ima.measure("/tmp/.hidden/miner", b"not in any policy")
    failed = stack.verifier.wait_for_state(node.agent_id, "failed", timeout=10)
    assert failed["reason"] == "ima_entry_not_allowed"
    assert "/tmp/.hidden/miner" in str(failed["message"])


def test_pcr10_extended_without_a_log_entry_fails(
    stack: Stack, node_factory: Callable[[], Node]
) -> None:
    node = node_factory()
    node.ima.extend_without_log()
    failed = stack.verifier.wait_for_state(node.agent_id, "failed", timeout=10)
    assert failed["reason"] == "ima_pcr_mismatch"


def test_swtpm_reboot_is_handled_without_a_false_failure(
    stack: Stack, node_factory: Callable[[], Node]
) -> None:
    node = node_factory()
    node.ima.measure("/usr/bin/bash", ALLOWED["/usr/bin/bash"])
    stack.verifier.wait_rounds(node.agent_id, 2)
    node.swtpm.restart()  # TPM Reset: resetCount up, PCRs back to zero
    node.ima.new_boot()
    node.ima.boot_aggregate()
    node.ima.measure("/usr/sbin/sshd", ALLOWED["/usr/sbin/sshd"])
    stack.verifier.wait_rounds(node.agent_id, 4)
    status = stack.verifier.status(node.agent_id)
    assert status["state"] == "attested", stack.verifier.events(node.agent_id)
    assert status["ima_entries_verified"] == 2
    events = stack.verifier.events(node.agent_id)
    assert all(event["to_state"] != "failed" for event in events)


def test_stopped_agent_is_unreachable_not_failed_and_comes_back(
    stack: Stack, node_factory: Callable[[], Node]
) -> None:
    node = node_factory()
    node.stop_api()
    unreachable = stack.verifier.wait_for_state(node.agent_id, "unreachable", timeout=10)
    assert unreachable["reason"] == "agent_unreachable"
    node.start_api()
    stack.verifier.wait_for_state(node.agent_id, "attested", timeout=15)
    states = [event["to_state"] for event in stack.verifier.events(node.agent_id)]
    assert "failed" not in states
    assert states[:2] == ["attested", "unreachable"]


def test_quote_from_another_tpm_fails(
    stack: Stack, node_factory: Callable[[], Node], make_swtpm: MakeSwtpm
) -> None:
    node = node_factory()
    other = make_swtpm()
    with TpmDevice(other.tcti) as device:
        device.ensure_ak()
    node.stop_api()
    node.start_api(tcti=other.tcti)  # the same node, answering with another TPM's AK
    failed = stack.verifier.wait_for_state(node.agent_id, "failed", timeout=10)
    assert failed["reason"] == "quote_signature_invalid"


def _first_bytes_of_a_request(port: int, client: tuple[Path, Path] | None) -> bytes:
    """Send an evidence request over TLS (optionally with a client certificate); the answer's
    first bytes, or b"" when the server refused the connection."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if client is not None:
        context.load_cert_chain(*client)
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw) as tls,
        ):
            tls.sendall(b"POST /v1/evidence HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
            return tls.recv(12)
    except (ssl.SSLError, OSError):
        return b""


def test_agent_api_refuses_clients_without_the_verifiers_certificate(
    stack: Stack, node_factory: Callable[[], Node]
) -> None:
    node = node_factory()
    assert _first_bytes_of_a_request(node.port, None) == b""
    tls_dir = stack.verifier.settings.verifier_tls_dir
    verifier_identity = (tls_dir / "client.pem", tls_dir / "client-key.pem")
    assert _first_bytes_of_a_request(node.port, verifier_identity) == b"HTTP/1.1 400"
