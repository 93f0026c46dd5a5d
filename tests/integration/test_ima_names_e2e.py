"""Names the kernel prints raw, end to end: a real-format ``ascii_runtime_measurements`` file
(written by the IMA emulator, PCR 10 extended in a real swtpm), read by the agent's real
``ImaLogSource``, served over its real mTLS API, fetched by the verifier's real HTTPS client,
judged by the verifier core, recorded and re-verified from the record.

An honest node that runs ``/tmp/caf\\xe9`` (and names with newlines and backslashes) under a
``/tmp/*`` exclude stays attested; a ``/tmp/../usr/bin/evil`` does not pass for excluded.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

import tpm
from agent.evidence import EvidenceService
from agent.ima_source import ImaLogSource
from agent.tls import ensure_server_identity, server_ssl_context
from agent.tpm_device import DEFAULT_AK_HANDLE, TpmDevice
from allowlists.boot import BootPolicy
from allowlists.ima.policy import RuntimePolicy
from allowlists.ima.template import parse_entry
from geoattest.dev.ima_emulator import ImaEmulator
from geoattest.dev.swtpm import SwtpmInstance
from geoattest.pcr_banks import PcrBank
from geoattest.tls_material import ensure_verifier_client_tls
from geoattest.wire import EvidenceRequest, EvidenceResponse
from tests.support.agent_server import serving_agent
from verifier.core.evidence import parse_evidence
from verifier.core.policy import AttestationPolicy
from verifier.core.record import decode_record, encode_record
from verifier.core.reverify import reverify_record
from verifier.core.round import verify_round
from verifier.core.round_record import RecordOrigin, round_record
from verifier.core.round_types import RoundMemory, RoundResult
from verifier.core.states import Outcome
from verifier.engine.fetch import AgentClient, ClientIdentity

pytestmark = pytest.mark.swtpm

RAW_NAMES = [b"/tmp/caf\xe9", b"/tmp/new\nline", b"/tmp/back\\slash", b"/tmp/\xff\n10 x"]


@dataclass(frozen=True, slots=True)
class Node:
    url: str
    pin: bytes  # DER of the agent API's certificate, as the registrar records it
    ak: tpm.TpmPublic
    ima: ImaEmulator
    client: AgentClient


@pytest.fixture
def node(swtpm: SwtpmInstance, tmp_path: Path) -> Iterator[Node]:
    with TpmDevice(swtpm.tcti) as device:
        ak = tpm.parse_tpm2b_public(device.ensure_ak())
    ima = ImaEmulator(swtpm.tcti, tmp_path / "ascii_runtime_measurements")
    ima.boot_aggregate()
    verifier_tls = ensure_verifier_client_tls(tmp_path / "verifier")
    identity = ensure_server_identity(tmp_path / "agent", "names-node", "127.0.0.1")
    service = EvidenceService(
        lambda: TpmDevice(swtpm.tcti),
        ImaLogSource(ima.log_path),
        ak_handle=DEFAULT_AK_HANDLE,
        hold_connection=False,
    )
    context = server_ssl_context(identity.cert_path, identity.key_path, verifier_tls.ca_cert)
    pin = x509.load_pem_x509_certificate(identity.cert_path.read_bytes()).public_bytes(Encoding.DER)
    client = AgentClient(
        ClientIdentity(cert_file=verifier_tls.client_cert, key_file=verifier_tls.client_key),
        timeout=20,
    )
    with serving_agent(service, context) as url:
        yield Node(url=url, pin=pin, ak=ak, ima=ima, client=client)
    client.close()


def _policy(node: Node) -> AttestationPolicy:
    aggregate = parse_entry(node.ima.entries[0].line).digest_text
    return AttestationPolicy(
        name="names",
        version=1,
        boot=BootPolicy(),
        runtime=RuntimePolicy(
            digests={"boot_aggregate": frozenset({aggregate})}, excludes=("/tmp/*",)
        ),
        ima_banks=(PcrBank.SHA256,),
    )


def _round(
    node: Node, policy: AttestationPolicy, memory: RoundMemory
) -> tuple[EvidenceResponse, RoundResult]:
    nonce = os.urandom(32)
    request = EvidenceRequest(
        nonce=nonce.hex(),
        pcrs=policy.pcr_selection(),
        ima_offset=memory.ima_offset_for(policy.ima_banks),
    )
    response = node.client.fetch_evidence(node.url, node.pin, request)
    evidence = parse_evidence(response, nonce)
    now = dt.datetime.now(dt.UTC)
    result = verify_round(evidence, ak=node.ak, policy=policy, previous=memory, now=now)
    record = round_record(
        agent_id="names-node",
        round_id=nonce.hex()[:16],
        started_at=now,
        ended_at=now,
        judged_at=now,
        origin=RecordOrigin(verifier_id="test"),
        policy=policy,
        ak=node.ak,
        location_key=None,
        previous=memory,
        evidence=evidence,
        result=result,
    )
    stored = decode_record(encode_record(record))
    assert stored.evidence is not None
    assert tuple(stored.evidence.ima_lines) == tuple(evidence.ima_lines)
    again = reverify_record(stored, ak=node.ak, policy=policy)
    assert again.consistent, again.mismatches
    return response, result


def test_names_printed_raw_keep_an_honest_node_attested(node: Node) -> None:
    policy = _policy(node)
    for name in RAW_NAMES:
        node.ima.measure(name.decode("utf-8", "surrogateescape"), b"scratch " + name)
    response, result = _round(node, policy, RoundMemory())
    assert result.outcome is Outcome.PASSED, result.message
    assert result.new_ima_entries == 1 + len(RAW_NAMES)
    assert response.ima.entries() == [entry.raw for entry in node.ima.entries]
    assert sorted(response.ima.raw_lines or {}) == ["1", "4"]  # the two that are not UTF-8
    assert "\n" in response.ima.lines[2]  # a newline inside a name: one entry, not two

    # The next round starts after them; a new name that only looks excluded fails it.
    node.ima.measure("/tmp/../usr/bin/evil", b"evil payload")
    _, attacked = _round(node, policy, result.memory)
    assert attacked.outcome is Outcome.INTEGRITY_FAILURE
    assert attacked.reason == "ima_entry_not_allowed"
    assert attacked.details["path"] == "/tmp/../usr/bin/evil"
