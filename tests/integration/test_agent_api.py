"""The agent's evidence API end to end: real swtpm, real HTTPS with client certificates, IMA
emulated on the same swtpm.

The evidence must verify with the pure ``tpm`` checks a verifier uses; nothing is served to a
client without a certificate from the verifier's CA.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from prometheus_client.parser import text_string_to_metric_families

import tpm
from agent.tls import ensure_server_identity
from agent.tpm_device import TpmDevice
from geoattest.dev.ima_emulator import IMA_PCR, ImaEmulator
from geoattest.dev.swtpm import SwtpmInstance, free_port_pair
from geoattest.errors import AgentCertificateMismatch
from geoattest.pcr_banks import PcrBank
from geoattest.tls_material import (
    create_client_ca,
    ensure_verifier_client_tls,
    issue_client_certificate,
    write_certified_key,
)
from geoattest.wire import EvidenceRequest, EvidenceResponse
from tests.support.evidence_agent import (
    PCRS,
    RunningAgent,
    ask_evidence,
    running_agent,
    verify_evidence,
)
from tests.support.service_process import ServiceProcess
from verifier.engine.fetch import AgentClient, ClientIdentity

pytestmark = pytest.mark.swtpm

_ONE_PCR = b'{"nonce": "' + b"ab" * 16 + b'", "pcrs": {"sha256": [10]}'  # an object left open


@pytest.fixture
def agent(swtpm: SwtpmInstance, tmp_path: Path) -> Iterator[RunningAgent]:
    with running_agent(swtpm, tmp_path) as running:
        yield running


def test_evidence_verifies_and_ima_lines_come_from_the_offset(agent: RunningAgent) -> None:
    with agent.session() as session:
        nonce, first = ask_evidence(session, agent)
        result = verify_evidence(agent, nonce, first)
        assert first.ima.offset == 0
        assert first.ima.lines == agent.ima.lines()
        assert first.ima.lines[0].endswith(" boot_aggregate")

        agent.ima.measure("/usr/bin/first", b"first binary")
        agent.ima.measure("/usr/bin/second", b"second binary")
        nonce, second = ask_evidence(session, agent, offset=1)
        later = verify_evidence(agent, nonce, second)
        assert later.clock_info.clock >= result.clock_info.clock
        assert second.ima.offset == 1
        assert second.ima.lines == [e.line for e in agent.ima.entries[1:]]
        assert second.pcrs[PcrBank.SHA256][str(IMA_PCR)] != first.pcrs[PcrBank.SHA256][str(IMA_PCR)]

        nonce, caught_up = ask_evidence(session, agent, offset=3)
        verify_evidence(agent, nonce, caught_up)
        assert (caught_up.ima.offset, caught_up.ima.lines) == (3, [])


def test_pcr10_is_the_replay_of_the_returned_log(agent: RunningAgent) -> None:
    """The emulator extends what it logs: replaying the lines reproduces the quoted PCR 10."""
    agent.ima.measure("/etc/hosts", b"127.0.0.1 localhost\n")
    with agent.session() as session:
        _, evidence = ask_evidence(session, agent)
    pcr10 = bytes(32)
    for entry in agent.ima.entries:
        assert entry.line in evidence.ima.lines
        pcr10 = hashlib.sha256(pcr10 + entry.template_hash_sha256).digest()
    assert evidence.pcrs[PcrBank.SHA256][str(IMA_PCR)] == pcr10.hex()


def test_offset_past_the_end_returns_the_whole_log(agent: RunningAgent) -> None:
    with agent.session() as session:
        _, evidence = ask_evidence(session, agent, offset=50)
    assert evidence.ima.offset == 0
    assert evidence.ima.lines == agent.ima.lines()


def test_no_client_certificate_is_refused(agent: RunningAgent) -> None:
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{agent.url}/v1/healthz", verify=str(agent.server_cert), timeout=10)


def test_client_certificate_of_another_ca_is_refused(agent: RunningAgent, tmp_path: Path) -> None:
    rogue = issue_client_certificate(create_client_ca("geoattest verifier client CA"))
    cert, key = tmp_path / "rogue.pem", tmp_path / "rogue-key.pem"
    write_certified_key(rogue, cert, key)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(
            f"{agent.url}/v1/healthz",
            cert=(str(cert), str(key)),
            verify=str(agent.server_cert),
            timeout=10,
        )


def _ask_health(tls: ssl.SSLSocket) -> bytes:
    tls.sendall(b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    return tls.recv(1024)


def test_handshake_itself_fails_without_a_certificate(agent: RunningAgent) -> None:
    """Below HTTP: the TLS layer aborts (TLS 1.3 reports it on the first read).

    The server sends a certificate_required alert and closes; depending on timing the client
    reads the alert or only the closed connection. Either way no HTTP answer comes back (the
    next test is the positive control with a client certificate)."""
    context = ssl.create_default_context(cafile=str(agent.server_cert))
    host, port = "127.0.0.1", int(agent.url.rsplit(":", 1)[1])
    with (
        context.wrap_socket(_connect(host, port), server_hostname=host) as tls,
        pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)) as refused,
    ):
        _ask_health(tls)
    if isinstance(refused.value, ssl.SSLError) and not isinstance(refused.value, ssl.SSLEOFError):
        assert "CERTIFICATE_REQUIRED" in str(refused.value)


def test_client_pinning_the_server_certificate_connects(agent: RunningAgent) -> None:
    with agent.session() as session:
        answer = session.get(f"{agent.url}/v1/healthz", timeout=10)
    assert answer.json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "body"),
        (b'{"pcrs": {"sha256": [10]}}', "nonce"),
        (b'{"nonce": "zz", "pcrs": {"sha256": [10]}}', "nonce"),
        (b'{"nonce": "' + b"ab" * 16 + b'", "pcrs": {"sha256": [24]}}', "pcrs"),
        (b'{"nonce": "' + b"a" * 33 + b'", "pcrs": {"sha256": [10]}}', "hex digits"),
        (_ONE_PCR + b', "ima_offset": -1}', "ima_offset"),
        # Nothing to quote: an empty selection proves nothing about the platform.
        (b'{"nonce": "' + b"ab" * 16 + b'", "pcrs": {}}', "pcrs"),
        (b'{"nonce": "' + b"ab" * 16 + b'", "pcrs": {"sha256": []}}', "pcrs"),
        (b'{"nonce": "' + b"ab" * 16 + b'", "pcrs": {"sha256": [10, 10]}}', "pcrs"),
        (b'{"nonce": "' + b"ab" * 16 + b'", "pcrs": {"sha256": [10], "sha256": [0]}}', "duplicate"),
        (_ONE_PCR + b', "ima_offset": 1e400}', "range"),
        (_ONE_PCR + b', "ima_offset": 9007199254740993}', "beyond"),
        (b'{"nonce": "\\ud800", "pcrs": {"sha256": [10]}}', "surrogate"),
        (_ONE_PCR + b', "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nests"),
    ],
)  # fmt: skip
def test_malformed_requests_are_400_json(agent: RunningAgent, body: bytes, where: str) -> None:
    answer, _ = _post_evidence(agent, body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "malformed_request"
    assert where in error["message"]


@pytest.mark.parametrize("bank", [b"md5", b"SHA256", b"sha3_256"])
def test_an_unknown_pcr_bank_is_400_pcr_bank_unknown(agent: RunningAgent, bank: bytes) -> None:
    body = b'{"nonce": "' + b"ab" * 16 + b'", "pcrs": {"' + bank + b'": [10]}}'
    answer, healthy = _post_evidence(agent, body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "pcr_bank_unknown"
    assert "pcrs" in error["message"]
    assert "sha256" in error["message"]  # names the banks it knows
    assert healthy.status_code == 200


def _post_evidence(agent: RunningAgent, body: bytes) -> tuple[requests.Response, requests.Response]:
    """POST ``body`` to the evidence route, then ask healthz on the same session (still up?)."""
    with agent.session() as session:
        answer = session.post(
            f"{agent.url}/v1/evidence",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        healthy = session.get(f"{agent.url}/v1/healthz", timeout=10)
    return answer, healthy


def test_metrics_count_answers_by_result_over_the_same_mtls(agent: RunningAgent) -> None:
    def scrape(session: requests.Session) -> dict[tuple[str, str], float]:
        answer = session.get(f"{agent.url}/metrics", timeout=10)
        assert answer.status_code == 200, answer.text
        return {
            (sample.name, sample.labels.get("result", "")): sample.value
            for family in text_string_to_metric_families(answer.text)
            for sample in family.samples
        }

    with agent.session() as session:
        before = scrape(session)
        agent.ima.measure("/usr/bin/counted", b"counted binary")
        ask_evidence(session, agent)
        bad = session.post(f"{agent.url}/v1/evidence", data=b"{}", timeout=10,
                           headers={"Content-Type": "application/json"})  # fmt: skip
        assert bad.status_code == 400
        after = scrape(session)
    ok = ("geoattest_agent_evidence_requests_total", "ok")
    refused = ("geoattest_agent_evidence_requests_total", "malformed_request")
    assert after[ok] == before.get(ok, 0.0) + 1
    assert after[refused] == before.get(refused, 0.0) + 1
    sent = ("geoattest_agent_ima_entries_sent_total", "")
    assert after[sent] == before.get(sent, 0.0) + len(agent.ima.lines())
    timed = ("geoattest_agent_evidence_seconds_count", "")
    assert after[timed] == before.get(timed, 0.0) + 1
    # Only the verifier's client CA gets in, as for evidence.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{agent.url}/metrics", verify=str(agent.server_cert), timeout=10)


def test_a_request_with_a_field_from_a_newer_verifier_is_answered(agent: RunningAgent) -> None:
    """Version skew: a field this agent does not know is ignored, not refused."""
    body = {"nonce": "ab" * 16, "pcrs": PCRS, "added_in_a_later_version": {"x": 1}}
    with agent.session() as session:
        answer = session.post(f"{agent.url}/v1/evidence", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    assert EvidenceResponse.model_validate_json(answer.content).quote.attest


def test_tpm_down_is_503_and_the_agent_recovers(agent: RunningAgent, swtpm: SwtpmInstance) -> None:
    swtpm.stop()
    with agent.session() as session:
        down = session.post(
            f"{agent.url}/v1/evidence",
            json=EvidenceRequest(nonce="ab" * 16, pcrs=PCRS).model_dump(),
            timeout=30,
        )
        assert down.status_code == 503
        assert down.json()["error"]["code"] == "tpm_unavailable"
        swtpm.start()
        nonce, evidence = ask_evidence(session, agent)
    verify_evidence(agent, nonce, evidence)


def _connect(host: str, port: int) -> socket.socket:
    return socket.create_connection((host, port), timeout=10)


def test_cli_serve_answers_over_mtls(swtpm: SwtpmInstance, tmp_path: Path) -> None:
    """``geoattest agent serve`` wires settings, TLS identity, IMA log and TPM together."""
    with TpmDevice(swtpm.tcti) as device:
        ak = tpm.parse_tpm2b_public(device.ensure_ak())
    ima = ImaEmulator(swtpm.tcti, tmp_path / "ima.log")
    ima.boot_aggregate()
    client = ensure_verifier_client_tls(tmp_path / "verifier")
    port = free_port_pair()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOATTEST_")}
    argv = [
        "agent", "serve", "--tcti", swtpm.tcti,
        "--agent-id", "cli-node", "--host", "127.0.0.1", "--port", str(port),
        "--ima-log", str(ima.log_path), "--verifier-ca", str(client.ca_cert),
        "--state-dir", str(tmp_path / "agent"),
    ]  # fmt: skip
    cert = tmp_path / "agent" / "server.pem"
    running = RunningAgent(f"https://127.0.0.1:{port}", cert, client, ak, ima)
    process = ServiceProcess(
        "agent", argv, env=env, log_path=tmp_path / "agent.log", cwd=tmp_path,
        ready=lambda _log: _serving(running),
    )  # fmt: skip
    process.start()
    try:
        with running.session() as session:
            nonce, evidence = ask_evidence(session, running)
        verify_evidence(running, nonce, evidence)
        assert evidence.ima.lines == ima.lines()
    finally:
        process.stop()


def _serving(agent: RunningAgent) -> bool:
    """True once the agent's mTLS API answers healthz (its certificate written first)."""
    if not agent.server_cert.is_file():
        return False
    try:
        with agent.session() as session:
            return session.get(f"{agent.url}/v1/healthz", timeout=2).ok
    except requests.RequestException:
        return False


def test_the_openapi_document_describes_the_evidence_api(agent: RunningAgent) -> None:
    with agent.session() as session:
        document = session.get(f"{agent.url}/v1/openapi.json", timeout=10).json()
    assert document["openapi"] == "3.1.0"
    assert set(document["paths"]) == {
        "/metrics",
        "/v1/evidence",
        "/v1/healthz",
        "/v1/openapi.json",
    }
    evidence = document["paths"]["/v1/evidence"]["post"]
    body = evidence["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    request_schema = document["components"]["schemas"][body.rsplit("/", 1)[1]]
    assert request_schema["properties"]["pcrs"]["minProperties"] == 1  # the bounds enforced


def _der(pem_path: Path) -> bytes:
    return x509.load_pem_x509_certificate(pem_path.read_bytes()).public_bytes(Encoding.DER)


def test_the_verifier_refuses_an_agent_api_that_is_not_the_pinned_one(
    agent: RunningAgent, tmp_path: Path
) -> None:
    """An on-path impostor (any valid TLS server, even one that accepts the verifier's client
    certificate) is not the enrolled agent: its certificate is not the one pinned."""
    client = AgentClient(
        ClientIdentity(cert_file=agent.client.client_cert, key_file=agent.client.client_key),
        timeout=20,
    )
    request = EvidenceRequest(nonce="ab" * 16, pcrs=PCRS)
    genuine = client.fetch_evidence(agent.url, _der(agent.server_cert), request)
    assert genuine.quote.attest
    other = ensure_server_identity(tmp_path / "impostor", "agent-under-test", "127.0.0.1")
    with pytest.raises(AgentCertificateMismatch, match="pinned at enrolment"):
        client.fetch_evidence(agent.url, _der(other.cert_path), request)
