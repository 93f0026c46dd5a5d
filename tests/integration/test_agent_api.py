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
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from prometheus_client.parser import text_string_to_metric_families

import tpm
from agent.evidence import EvidenceService
from agent.ima_source import ImaLogSource
from agent.tls import ensure_server_identity, server_ssl_context
from agent.tpm_device import DEFAULT_AK_HANDLE, TpmDevice
from geoattest.dev.ima_emulator import IMA_PCR, ImaEmulator
from geoattest.dev.swtpm import SwtpmInstance, free_port_pair
from geoattest.errors import AgentCertificateMismatch
from geoattest.pcr_banks import PcrBank
from geoattest.tls_material import (
    ClientTlsFiles,
    create_client_ca,
    ensure_verifier_client_tls,
    issue_client_certificate,
    write_certified_key,
)
from geoattest.wire import EvidenceRequest, EvidenceResponse, quote_qualifying_data
from tests.support.agent_server import serving_agent
from tests.support.agent_simulator import make_simulators
from tests.support.fleet_server import enrol_fleet, fleet_tls, serve_fleet
from tests.support.registrar_server import RunningRegistrar, running_registrar
from tests.support.service_process import ServiceProcess
from tests.support.software_pki import SoftwareCa, make_ca
from tpm import Alg
from verifier.engine.fetch import AgentClient, ClientIdentity

pytestmark = pytest.mark.swtpm

PCRS = {PcrBank.SHA256: [0, 1, 2, 3, 4, 5, 6, 7, IMA_PCR]}  # swtpm_setup activates sha256 only
BANK_ALGS = {PcrBank.SHA1: Alg.SHA1, PcrBank.SHA256: Alg.SHA256}
_ONE_PCR = b'{"nonce": "' + b"ab" * 16 + b'", "pcrs": {"sha256": [10]}'  # an object left open


@dataclass(frozen=True, slots=True)
class RunningAgent:
    url: str
    server_cert: Path
    client: ClientTlsFiles
    ak: tpm.TpmPublic
    ima: ImaEmulator

    def session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # else REQUESTS_CA_BUNDLE silently replaces session.verify
        session.cert = (str(self.client.client_cert), str(self.client.client_key))
        session.verify = str(self.server_cert)  # the pinned, self-signed certificate
        return session


@pytest.fixture
def agent(swtpm: SwtpmInstance, tmp_path: Path) -> Iterator[RunningAgent]:
    with TpmDevice(swtpm.tcti) as device:
        ak = tpm.parse_tpm2b_public(device.ensure_ak())
    ima = ImaEmulator(swtpm.tcti, tmp_path / "ascii_runtime_measurements")
    ima.boot_aggregate()
    client = ensure_verifier_client_tls(tmp_path / "verifier")
    identity = ensure_server_identity(tmp_path / "agent", "agent-under-test", "127.0.0.1")
    context = server_ssl_context(identity.cert_path, identity.key_path, client.ca_cert)
    service = EvidenceService(
        lambda: TpmDevice(swtpm.tcti),
        ImaLogSource(ima.log_path),
        ak_handle=DEFAULT_AK_HANDLE,
        hold_connection=False,
    )
    with serving_agent(service, context) as url:
        yield RunningAgent(url=url, server_cert=identity.cert_path, client=client, ak=ak, ima=ima)


def _ask(
    session: requests.Session, agent: RunningAgent, offset: int = 0
) -> tuple[bytes, EvidenceResponse]:
    nonce = os.urandom(20)
    body = EvidenceRequest(nonce=nonce.hex(), pcrs=PCRS, ima_offset=offset)
    answer = session.post(f"{agent.url}/v1/evidence", json=body.model_dump(), timeout=10)
    assert answer.status_code == 200, answer.text
    return nonce, EvidenceResponse.model_validate_json(answer.content)


def _verify(
    agent: RunningAgent | tpm.TpmPublic, nonce: bytes, evidence: EvidenceResponse
) -> tpm.QuoteResult:
    values = {
        BANK_ALGS[bank]: {int(i): bytes.fromhex(v) for i, v in pcrs.items()}
        for bank, pcrs in evidence.pcrs.items()
    }
    return tpm.verify_quote(
        ak=agent.ak if isinstance(agent, RunningAgent) else agent,
        attest=evidence.quote.attest,
        signature=evidence.quote.signature,
        nonce=quote_qualifying_data(nonce, None),
        pcr_values=values,
    )


def test_evidence_verifies_and_ima_lines_come_from_the_offset(agent: RunningAgent) -> None:
    with agent.session() as session:
        nonce, first = _ask(session, agent)
        result = _verify(agent, nonce, first)
        assert first.ima.offset == 0
        assert first.ima.lines == agent.ima.lines()
        assert first.ima.lines[0].endswith(" boot_aggregate")

        agent.ima.measure("/usr/bin/first", b"first binary")
        agent.ima.measure("/usr/bin/second", b"second binary")
        nonce, second = _ask(session, agent, offset=1)
        later = _verify(agent, nonce, second)
        assert later.clock_info.clock >= result.clock_info.clock
        assert second.ima.offset == 1
        assert second.ima.lines == [e.line for e in agent.ima.entries[1:]]
        assert second.pcrs[PcrBank.SHA256][str(IMA_PCR)] != first.pcrs[PcrBank.SHA256][str(IMA_PCR)]

        nonce, caught_up = _ask(session, agent, offset=3)
        _verify(agent, nonce, caught_up)
        assert (caught_up.ima.offset, caught_up.ima.lines) == (3, [])


def test_pcr10_is_the_replay_of_the_returned_log(agent: RunningAgent) -> None:
    """The emulator extends what it logs: replaying the lines reproduces the quoted PCR 10."""
    agent.ima.measure("/etc/hosts", b"127.0.0.1 localhost\n")
    with agent.session() as session:
        _, evidence = _ask(session, agent)
    pcr10 = bytes(32)
    for entry in agent.ima.entries:
        assert entry.line in evidence.ima.lines
        pcr10 = hashlib.sha256(pcr10 + entry.template_hash_sha256).digest()
    assert evidence.pcrs[PcrBank.SHA256][str(IMA_PCR)] == pcr10.hex()


def test_offset_past_the_end_returns_the_whole_log(agent: RunningAgent) -> None:
    with agent.session() as session:
        _, evidence = _ask(session, agent, offset=50)
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
        _ask(session, agent)
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
        nonce, evidence = _ask(session, agent)
    _verify(agent, nonce, evidence)


def _connect(host: str, port: int) -> socket.socket:
    return socket.create_connection((host, port), timeout=10)


# --- the simulated fleet: same protocol, software TPMs, one port ------------------------------


@pytest.fixture
def software_ca() -> SoftwareCa:
    return make_ca()


@pytest.fixture
def sim_registrar(tmp_path: Path, software_ca: SoftwareCa) -> Iterator[RunningRegistrar]:
    trust = tmp_path / "ek-ca"
    trust.mkdir()
    (trust / "sim-root.pem").write_bytes(software_ca.pem)
    with running_registrar(tmp_path, trust) as running:
        yield running


def test_fleet_enrols_and_serves_verifiable_evidence_over_mtls(
    tmp_path: Path, software_ca: SoftwareCa, sim_registrar: RunningRegistrar
) -> None:
    sims = make_simulators(3, software_ca)
    tls = fleet_tls(tmp_path / "fleet-tls")
    with serve_fleet(sims, ssl_context=tls.server_context) as fleet:
        views = enrol_fleet(sim_registrar.url, sims, fleet)
        assert [v.state for v in views] == ["active"] * 3
        with requests.Session() as session:
            session.trust_env = False
            session.verify = str(tls.server_cert)
            session.cert = (str(tls.client.client_cert), str(tls.client.client_key))
            for sim, view in zip(sims, views, strict=True):
                nonce = os.urandom(20)
                body = EvidenceRequest(nonce=nonce.hex(), pcrs=PCRS).model_dump()
                url = fleet.agent_url(sim.agent_id) + "/v1/evidence"
                answer = session.post(url, json=body, timeout=10)
                assert answer.status_code == 200, answer.text
                evidence = EvidenceResponse.model_validate_json(answer.content)
                assert view.ak_public is not None
                ak = tpm.parse_tpm2b_public(view.ak_public)
                _verify(ak, nonce, evidence)
            unknown = session.post(fleet.agent_url("nobody") + "/v1/evidence", json={}, timeout=10)
            assert unknown.status_code == 404
            fleet.offline.add(sims[0].agent_id)
            with pytest.raises(requests.exceptions.ConnectionError):
                session.post(
                    fleet.agent_url(sims[0].agent_id) + "/v1/evidence", json=body, timeout=10
                )
        with pytest.raises(requests.exceptions.ConnectionError):  # no client certificate
            requests.get(
                fleet.agent_url(sims[1].agent_id) + "/v1/healthz",
                verify=str(tls.server_cert),
                timeout=10,
            )


def test_fleet_registers_its_path_routed_urls_and_pin(
    tmp_path: Path, software_ca: SoftwareCa, sim_registrar: RunningRegistrar
) -> None:
    sims = make_simulators(2, software_ca)
    tls = fleet_tls(tmp_path / "fleet-tls")
    with serve_fleet(sims, ssl_context=tls.server_context) as fleet:
        views = enrol_fleet(
            sim_registrar.url, sims, fleet, tls_certificate=tls.server_certificate_der
        )
    for sim, view in zip(sims, views, strict=True):
        assert view.agent_url == f"{fleet.base_url}/agents/{sim.agent_id}"
        assert view.tls_certificate == tls.server_certificate_der


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
            nonce, evidence = _ask(session, running)
        _verify(running, nonce, evidence)
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
