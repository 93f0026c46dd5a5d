"""The agent's location evidence through its own API: real swtpm, real registrar, real HTTPS with
client certificates, a real capture fed to the ``LocationProvider``.

The node enrols with ``agent.enrolment.enrol(..., location_key_handle=…)`` (what ``geoattest agent
enrol --gnss`` runs), so the key the evidence is checked with is the one the registrar recorded.
Evidence asked for with ``include_location`` is signed in the TPM by that key, and the quote of
the same round binds it: extraData = ``quote_qualifying_data(nonce, evidence)``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

import tpm
from agent.enrolment import enrol
from agent.evidence import EvidenceService
from agent.ima_source import ImaLogSource
from agent.location import LocationProvider
from agent.server import create_app, location_provider, make_agent_server
from agent.tls import ensure_server_identity, server_ssl_context
from agent.tpm_device import DEFAULT_AK_HANDLE, DEFAULT_LOCATION_KEY_HANDLE, TpmDevice
from geoattest.dev.ima_emulator import IMA_PCR, ImaEmulator
from geoattest.dev.swtpm import SwtpmCa, SwtpmInstance
from geoattest.errors import NonceMismatch, QuoteSignatureInvalid
from geoattest.pcr_banks import PcrBank
from geoattest.settings import load_settings
from geoattest.tls_material import ClientTlsFiles, ensure_verifier_client_tls
from geoattest.wire import (
    AgentView,
    EvidenceRequest,
    EvidenceResponse,
    quote_qualifying_data,
)
from geofence import SourceKind, decode_evidence
from geofence.nmea import split_lines
from tests.paths import vector
from tests.support.registrar_server import running_registrar, trust_dir_with
from tpm import Alg

pytestmark = pytest.mark.swtpm

PCRS = {PcrBank.SHA256: [0, 1, 2, 3, 4, 5, 6, 7, IMA_PCR]}
CAPTURE = "nmea/nl2008u.log"  # NaviLock NL-8002U (u-blox 8), Schramberg DE: 9 fixes


@dataclass(frozen=True, slots=True)
class LocatedAgent:
    url: str
    server_cert: Path
    client: ClientTlsFiles
    ak: tpm.TpmPublic
    location_key: tpm.TpmPublic  # as the registrar recorded it
    provider: LocationProvider

    def session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False
        session.cert = (str(self.client.client_cert), str(self.client.client_key))
        session.verify = str(self.server_cert)
        return session


def capture_lines() -> list[bytes]:
    return split_lines(vector(CAPTURE).read_bytes())


@pytest.fixture
def located(swtpm: SwtpmInstance, test_ca: SwtpmCa, tmp_path: Path) -> Iterator[LocatedAgent]:
    trust_dir = trust_dir_with(tmp_path / "ek-ca", test_ca.trust_store)
    with running_registrar(tmp_path, trust_dir) as registrar:
        client = registrar.client()
        with TpmDevice(swtpm.tcti) as device:
            view = enrol(
                device, client, "geo-agent", location_key_handle=DEFAULT_LOCATION_KEY_HANDLE
            )
        client.close()
    assert view.state == "active"
    assert view.location_key_public is not None, "enrol sent no location key"
    assert view.ak_public is not None
    ima = ImaEmulator(swtpm.tcti, tmp_path / "ascii_runtime_measurements")
    ima.boot_aggregate()
    tls = ensure_verifier_client_tls(tmp_path / "verifier")
    identity = ensure_server_identity(tmp_path / "agent", "geo-agent", "127.0.0.1")
    context = server_ssl_context(identity.cert_path, identity.key_path, tls.ca_cert)
    provider = LocationProvider(
        None, None, DEFAULT_LOCATION_KEY_HANDLE, wait_for_fix_s=0.2, source_kind=SourceKind.SERIAL
    )
    service = EvidenceService(
        lambda: TpmDevice(swtpm.tcti),
        ImaLogSource(ima.log_path),
        ak_handle=DEFAULT_AK_HANDLE,
        location=provider,
        hold_connection=False,
    )
    server = make_agent_server(create_app(service), context, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, name="agent-api", daemon=True)
    thread.start()
    try:
        yield LocatedAgent(
            url=f"https://127.0.0.1:{server.server_port}",
            server_cert=identity.cert_path,
            client=tls,
            ak=tpm.parse_tpm2b_public(view.ak_public),
            location_key=tpm.parse_tpm2b_public(view.location_key_public),
            provider=provider,
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        service.close()


def ask(
    session: requests.Session, agent: LocatedAgent, *, include_location: bool
) -> tuple[bytes, requests.Response]:
    nonce = os.urandom(32)
    body = EvidenceRequest(nonce=nonce.hex(), pcrs=PCRS, include_location=include_location)
    return nonce, session.post(f"{agent.url}/v1/evidence", json=body.model_dump(), timeout=10)


def verify_quote(
    agent: LocatedAgent, evidence: EvidenceResponse, extra_data: bytes
) -> tpm.QuoteResult:
    values = {
        Alg.SHA256: {int(i): bytes.fromhex(v) for i, v in evidence.pcrs[PcrBank.SHA256].items()}
    }
    return tpm.verify_quote(
        ak=agent.ak,
        attest=evidence.quote.attest,
        signature=evidence.quote.signature,
        nonce=extra_data,
        pcr_values=values,
    )


def test_location_evidence_is_signed_by_the_registered_key_and_bound_to_the_quote(
    located: LocatedAgent,
) -> None:
    lines = capture_lines()
    half = len(lines) // 2
    for line in lines[:half]:
        located.provider.feed(line)
    with located.session() as session:
        nonce, answer = ask(session, located, include_location=True)
        assert answer.status_code == 200, answer.text
        first = EvidenceResponse.model_validate_json(answer.content)
        assert first.location is not None
        assert first.location_signature is not None
        signature = tpm.parse_tpmt_signature(first.location_signature)
        tpm.verify_signature(located.location_key, first.location, signature)
        with pytest.raises(QuoteSignatureInvalid):  # the AK did not sign location evidence
            tpm.verify_signature(located.ak, first.location, signature)
        evidence = decode_evidence(first.location)
        assert evidence.nonce == nonce
        assert evidence.receiver.startswith("u-blox AG")
        assert 48.2 < evidence.latitude < 48.23
        assert 8.41 < evidence.longitude < 8.43
        verify_quote(located, first, quote_qualifying_data(nonce, first.location))
        with pytest.raises(NonceMismatch):  # the quote binds the evidence digest
            verify_quote(located, first, quote_qualifying_data(nonce, None))

        for line in lines[half:]:
            located.provider.feed(line)
        nonce, answer = ask(session, located, include_location=True)
        assert answer.status_code == 200, answer.text
        second = EvidenceResponse.model_validate_json(answer.content)
        assert second.location is not None
        verify_quote(located, second, quote_qualifying_data(nonce, second.location))
        later = decode_evidence(second.location)
        assert later.utc > evidence.utc
        assert later.nmea_digest != evidence.nmea_digest


def test_evidence_without_include_location_carries_none(located: LocatedAgent) -> None:
    for line in capture_lines():
        located.provider.feed(line)
    with located.session() as session:
        nonce, answer = ask(session, located, include_location=False)
    assert answer.status_code == 200, answer.text
    assert "location" not in answer.json()
    plain = EvidenceResponse.model_validate_json(answer.content)
    assert plain.location is None
    assert plain.location_signature is None
    verify_quote(located, plain, quote_qualifying_data(nonce, None))


def test_no_fresh_fix_is_a_503_not_old_evidence(located: LocatedAgent) -> None:
    with located.session() as session:
        _, answer = ask(session, located, include_location=True)  # nothing fed yet
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "gnss_unavailable"
        for line in capture_lines():
            located.provider.feed(line)
        _, answer = ask(session, located, include_location=True)
        assert answer.status_code == 200, answer.text
        _, answer = ask(session, located, include_location=True)  # same fix: never signed twice
        assert answer.status_code == 503
        assert "no new GNSS fix" in answer.json()["error"]["message"]
        _, answer = ask(session, located, include_location=False)  # platform rounds go on
        assert answer.status_code == 200, answer.text


def test_gnss_source_setting_replays_a_capture_fast(swtpm: SwtpmInstance) -> None:
    """The provider ``agent serve --gnss file:…`` builds, on the location key ``agent enrol``
    made."""
    settings = load_settings(
        tcti=swtpm.tcti, gnss_source=f"file:{vector(CAPTURE)}", ima_log_path=Path("/none")
    )
    provider = location_provider(settings)
    assert provider is not None
    with TpmDevice(swtpm.tcti) as device:
        device.ensure_ak()
        device.create_location_key(settings.location_key_handle)
        provider.start()
        try:
            deadline = time.monotonic() + 5
            while len(provider.track()) < 8 and time.monotonic() < deadline:  # last epoch open
                time.sleep(0.01)
            signed = provider.signed_location(b"\x01" * 32, device=device)
        finally:
            provider.close()
        key = tpm.parse_tpm2b_public(device.read_public(settings.location_key_handle))
    assert len(provider.track()) == 8
    tpm.verify_signature(key, signed.evidence, tpm.parse_tpmt_signature(signed.signature))
    assert decode_evidence(signed.evidence).nmea_digest == provider.track()[-1].nmea_digest


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GEOATTEST_")}
    return subprocess.run(
        [sys.executable, "-m", "geoattest", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_enrol_command_with_gnss_registers_the_location_key(
    swtpm: SwtpmInstance, test_ca: SwtpmCa, tmp_path: Path
) -> None:
    trust_dir = trust_dir_with(tmp_path / "ek-ca", test_ca.trust_store)
    with running_registrar(tmp_path, trust_dir) as registrar:
        base = ("agent", "enrol", "--registrar", registrar.url, "--tcti", swtpm.tcti)
        typo = _cli(*base, "--agent-id", "cli-geo", "--gnss", "gspd:127.0.0.1:2947")
        assert typo.returncode == 1
        assert "error: configuration_error: GNSS source 'gspd:" in typo.stderr
        spec = f"file:{vector(CAPTURE)}?paced"
        enrolled = _cli(*base, "--agent-id", "cli-geo", "--gnss", spec, "--state-dir",
                        str(tmp_path / "agent"), "--json")  # fmt: skip
        assert enrolled.returncode == 0, enrolled.stderr
        record = AgentView.model_validate_json(enrolled.stdout)
    assert record.state == "active"
    assert record.location_key_public is not None
    with TpmDevice(swtpm.tcti) as device:
        assert device.read_public(DEFAULT_LOCATION_KEY_HANDLE) == record.location_key_public


def test_serve_command_refuses_a_bad_gnss_spec(tmp_path: Path) -> None:
    tls = ensure_verifier_client_tls(tmp_path / "verifier")
    # The spec is refused before anything binds port 1 or opens the TPM.
    served = _cli("agent", "serve", "--agent-id", "bad-gnss", "--tcti", "swtpm:port=1",
                  "--verifier-ca", str(tls.ca_cert), "--state-dir", str(tmp_path / "agent"),
                  "--port", "1", "--gnss", "file:x.log?speed=fast")  # fmt: skip
    assert served.returncode == 1
    assert "speed 'fast' is not a number" in served.stderr
