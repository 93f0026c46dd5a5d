"""The boot event log end to end: a real swtpm whose PCRs 0-7 were extended like firmware
extends them, the agent's mTLS API serving the configured ``binary_bios_measurements`` file when
asked, and ``verify_round`` replaying it against the genuine quote."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

import tpm
from agent.evidence import BootLogFile, EvidenceService
from agent.tls import ensure_server_identity, server_ssl_context
from agent.tpm_device import DEFAULT_AK_HANDLE, TpmDevice
from allowlists.boot import BootPolicy
from geoattest.dev.swtpm import SwtpmInstance
from geoattest.pcr_banks import PcrBank
from geoattest.tls_material import ClientTlsFiles, ensure_verifier_client_tls
from geoattest.wire import EvidenceRequest, EvidenceResponse
from tests.paths import vector
from tests.support.agent_server import serving_agent
from tests.support.agent_simulator import MemoryMeasurementList
from tpm import EventType
from verifier.core.evidence import parse_evidence
from verifier.core.policy import AttestationPolicy
from verifier.core.round import verify_round
from verifier.core.round_types import RoundMemory, RoundResult
from verifier.core.states import Outcome

pytestmark = pytest.mark.swtpm

# sha256-only and StartupLocality 0, like the swtpm of the fixture (sha256 bank, locality 0)
FIRMWARE_LOG = vector("keylime/uefi_eventlog/binary_bios_measurements-secureboot")
POLICY = AttestationPolicy(
    name="boot-log",
    version=1,
    boot=BootPolicy(),
    runtime=None,
    ima_banks=(PcrBank.SHA256,),
    boot_log_replay=True,
)


@dataclass(frozen=True, slots=True)
class BootedAgent:
    url: str
    server_cert: Path
    client: ClientTlsFiles
    ak: tpm.TpmPublic
    boot_log_path: Path

    def ask(self, *, include_boot_log: bool) -> tuple[bytes, EvidenceResponse]:
        nonce = os.urandom(32)
        body = EvidenceRequest(
            nonce=nonce.hex(), pcrs=POLICY.pcr_selection(), include_boot_log=include_boot_log
        )
        with requests.Session() as session:
            session.trust_env = False
            session.cert = (str(self.client.client_cert), str(self.client.client_key))
            session.verify = str(self.server_cert)
            answer = session.post(f"{self.url}/v1/evidence", json=body.model_dump(), timeout=10)
        assert answer.status_code == 200, answer.text
        return nonce, EvidenceResponse.model_validate_json(answer.content)

    def round(self) -> RoundResult:
        nonce, response = self.ask(include_boot_log=True)
        return verify_round(
            parse_evidence(response, nonce),
            ak=self.ak,
            policy=POLICY,
            previous=RoundMemory(),
            now=datetime.now(UTC),
        )


def _boot_through(device: TpmDevice, log: bytes) -> None:
    """Extend the TPM's PCRs with every measured event of ``log``, as the firmware did."""
    for event in tpm.parse_event_log(log).events:
        if event.event_type != EventType.EV_NO_ACTION:
            device.pcr_extend(event.pcr, {PcrBank.SHA256: event.digests[PcrBank.SHA256]})


@pytest.fixture
def agent(swtpm: SwtpmInstance, tmp_path: Path) -> Iterator[BootedAgent]:
    log = FIRMWARE_LOG.read_bytes()
    with TpmDevice(swtpm.tcti) as device:
        ak = tpm.parse_tpm2b_public(device.ensure_ak())
        _boot_through(device, log)
    boot_log_path = tmp_path / "binary_bios_measurements"
    boot_log_path.write_bytes(log)
    client = ensure_verifier_client_tls(tmp_path / "verifier")
    identity = ensure_server_identity(tmp_path / "agent", "agent-under-test", "127.0.0.1")
    context = server_ssl_context(identity.cert_path, identity.key_path, client.ca_cert)
    service = EvidenceService(
        lambda: TpmDevice(swtpm.tcti),
        MemoryMeasurementList(),
        ak_handle=DEFAULT_AK_HANDLE,
        hold_connection=False,
        boot_log=BootLogFile(boot_log_path),
    )
    with serving_agent(service, context) as url:
        yield BootedAgent(
            url=url,
            server_cert=identity.cert_path,
            client=client,
            ak=ak,
            boot_log_path=boot_log_path,
        )


def test_agent_returns_the_configured_log_only_when_asked(agent: BootedAgent) -> None:
    _, asked = agent.ask(include_boot_log=True)
    assert asked.boot_log == agent.boot_log_path.read_bytes()
    _, plain = agent.ask(include_boot_log=False)
    assert plain.boot_log is None


def test_round_replays_the_log_against_the_genuine_quote(agent: BootedAgent) -> None:
    result = agent.round()
    assert result.outcome is Outcome.PASSED, result.message

    log = tpm.parse_event_log(agent.boot_log_path.read_bytes())
    index = max(i for i, e in enumerate(log.events) if e.pcr == 4)
    events = list(log.events)
    events[index] = replace(events[index], digests={"sha256": bytes(32)})
    agent.boot_log_path.write_bytes(tpm.encode_event_log(replace(log, events=tuple(events))))
    edited = agent.round()
    assert edited.outcome is Outcome.INTEGRITY_FAILURE
    assert edited.reason == "boot_log_pcr_mismatch"
    assert edited.details["pcr"] == "4"


def test_missing_log_file_is_answered_without_a_log(agent: BootedAgent) -> None:
    agent.boot_log_path.unlink()
    _, response = agent.ask(include_boot_log=True)
    assert response.boot_log is None
    assert agent.round().reason == "boot_log_missing"
