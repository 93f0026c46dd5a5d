"""An agent's evidence API served on a real swtpm with emulated IMA, as the integration tests
start it, and what they do with it: ask for evidence over mTLS and verify it as a verifier does."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

import tpm
from agent.evidence import EvidenceService
from agent.ima_source import ImaLogSource
from agent.tls import ensure_server_identity, server_ssl_context
from agent.tpm_device import DEFAULT_AK_HANDLE, TpmDevice
from geoattest.dev.ima_emulator import IMA_PCR, ImaEmulator
from geoattest.dev.swtpm import SwtpmInstance
from geoattest.pcr_banks import PcrBank
from geoattest.tls_material import (
    ClientTlsFiles,
    ensure_verifier_client_tls,
)
from geoattest.wire import EvidenceRequest, EvidenceResponse, quote_qualifying_data
from tests.support.agent_server import serving_agent
from tpm import Alg

PCRS = {PcrBank.SHA256: [0, 1, 2, 3, 4, 5, 6, 7, IMA_PCR]}  # swtpm_setup activates sha256 only
BANK_ALGS = {PcrBank.SHA1: Alg.SHA1, PcrBank.SHA256: Alg.SHA256}


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


@contextmanager
def running_agent(swtpm: SwtpmInstance, tmp_path: Path) -> Iterator[RunningAgent]:
    """The evidence API on ``swtpm`` (its AK made, IMA booted) over mTLS, until the block ends."""
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


def ask_evidence(
    session: requests.Session, agent: RunningAgent, offset: int = 0
) -> tuple[bytes, EvidenceResponse]:
    """A fresh nonce and the agent's answer to it, from IMA line ``offset`` (asserted 200)."""
    nonce = os.urandom(20)
    body = EvidenceRequest(nonce=nonce.hex(), pcrs=PCRS, ima_offset=offset)
    answer = session.post(f"{agent.url}/v1/evidence", json=body.model_dump(), timeout=10)
    assert answer.status_code == 200, answer.text
    return nonce, EvidenceResponse.model_validate_json(answer.content)


def verify_evidence(
    agent: RunningAgent | tpm.TpmPublic, nonce: bytes, evidence: EvidenceResponse
) -> tpm.QuoteResult:
    """The quote checked as a verifier checks it (``tpm.verify_quote``); raises when it fails."""
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
