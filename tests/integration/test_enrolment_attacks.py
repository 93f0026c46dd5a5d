"""Enrolment cannot be disturbed by someone without the TPM: real swtpm for the genuine node, a
real registrar over HTTP, real SQLite.

The attacker knows everything a node makes public (its EK certificate and EK public area, its
AK public area, the enrolment request it sent, captured off the wire) and has no TPM: its AK is
a software key. Whatever it posts, only the genuine node's completed activation changes what
the registrar stores. Each test fails if the registrar rule named in it is removed.
"""

from __future__ import annotations

import base64

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

import tpm
from agent.enrolment import enrol
from agent.tpm_device import TpmDevice
from geoattest.errors import ActivationFailed
from geoattest.registrar_client import RegistrarClient
from geoattest.wire import (
    AgentView,
    EnrolRequest,
    activation_proof,
    enrolment_body,
    enrolment_digest,
)
from registrar.evidence import ek_key_fingerprint
from tests.support import MakeSwtpm
from tests.support.registrar_server import RunningRegistrar, recorded_facts

pytestmark = pytest.mark.swtpm

ATTACKER_URL = "https://203.0.113.66:9002"


def _genuine_request(device: TpmDevice, agent_id: str) -> EnrolRequest:
    return EnrolRequest(
        agent_id=agent_id,
        ek_certificate=device.read_ek_certificate(),
        ek_public=device.ek_public(),
        ak_public=device.ensure_ak(),
        agent_url="https://10.0.0.7:9002",
    )


def _software_ak() -> bytes:
    """An AK public area with every attribute a TPM AK has, whose key lives in software."""
    key = ec.generate_private_key(ec.SECP256R1())
    return tpm.encode_tpm2b_public(tpm.ak_public(key.public_key()))


def _without_tpm(victim: TpmDevice, agent_id: str, **changes: object) -> dict[str, object]:
    """An enrolment body for ``victim``'s EK that an attacker without its TPM can write."""
    request = EnrolRequest(
        agent_id=agent_id,
        ek_certificate=victim.read_ek_certificate(),
        ek_public=victim.ek_public(),
        ak_public=_software_ak(),
        agent_url=ATTACKER_URL,
    )
    return {**enrolment_body(request), **changes}


def _pem(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)


def _ber(der: bytes) -> bytes:
    """The same certificate with a non-minimal length on its outer SEQUENCE (valid BER, not DER):
    the signed TBSCertificate is untouched, so the signature still verifies."""
    assert der[:2] == b"\x30\x82", "expected a DER certificate with a two-byte length"
    return b"\x30\x83\x00" + der[2:]


RE_ENCODINGS = {"pem": _pem, "ber": _ber}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _answer(device: TpmDevice, client: RegistrarClient, request: EnrolRequest) -> bytes:
    """Post ``request`` as the genuine node and return its activation proof."""
    answer = client.enrol(request)
    secret = device.activate_credential(
        answer.challenge.credential_blob, answer.challenge.encrypted_secret
    )
    return activation_proof(secret, enrolment_digest(enrolment_body(request)))


def _post(registrar: RunningRegistrar, body: object) -> int:
    return registrar.post("/v1/agents", body).status_code


@pytest.mark.parametrize("encoding", sorted(RE_ENCODINGS))
def test_enrolment_without_the_tpm_leaves_the_active_record_as_it_was(
    make_swtpm: MakeSwtpm, registrar: RunningRegistrar, client: RegistrarClient, encoding: str
) -> None:
    """Rule: an enrolment only adds a pending enrolment; the identity record is written by an
    activation alone (removing it lets the attacker's certificate bytes into the record)."""
    with TpmDevice(make_swtpm().tcti) as device:
        before = enrol(device, client, "edge-1")
        copied = RE_ENCODINGS[encoding](device.read_ek_certificate())
        body = _without_tpm(device, "edge-1", ek_certificate=_b64(copied))
    assert _post(registrar, body) == 201  # accepted: the re-encoded chain is valid
    with pytest.raises(ActivationFailed):
        client.activate("edge-1", b"\x00" * 32)
    assert recorded_facts(client.get_agent("edge-1")) == recorded_facts(before)
    assert [recorded_facts(view) for view in client.list_agents().agents] == [
        recorded_facts(before)
    ]


@pytest.mark.parametrize("encoding", sorted(RE_ENCODINGS))
def test_re_encoded_certificate_posted_during_enrolment_is_never_stored(
    make_swtpm: MakeSwtpm, registrar: RunningRegistrar, client: RegistrarClient, encoding: str
) -> None:
    """The attacker posts the node's own request with the certificate re-encoded while the node
    enrols. Rule: each enrolment is its own pending row and the proof activates the one it
    answers (a single slot per agent id would take the attacker's bytes, or lose the node's
    challenge)."""
    with TpmDevice(make_swtpm().tcti) as device:
        request = _genuine_request(device, "edge-1")
        answer = client.enrol(request)
        copied = RE_ENCODINGS[encoding](request.ek_certificate)
        assert _post(registrar, {**enrolment_body(request), "ek_certificate": _b64(copied)}) == 201
        secret = device.activate_credential(
            answer.challenge.credential_blob, answer.challenge.encrypted_secret
        )
    view = client.activate(
        "edge-1", activation_proof(secret, enrolment_digest(enrolment_body(request)))
    )
    assert view.ek_certificate == request.ek_certificate
    assert client.get_agent("edge-1").ek_certificate == request.ek_certificate


def test_re_posting_the_nodes_request_does_not_replace_its_challenge(
    make_swtpm: MakeSwtpm, registrar: RunningRegistrar, client: RegistrarClient
) -> None:
    """The request captured off the wire, re-posted as it is, between the node's enrol and its
    activate. Rule: several pending challenges coexist (replacing the earlier one makes the
    node's correct proof fail)."""
    with TpmDevice(make_swtpm().tcti) as device:
        request = _genuine_request(device, "edge-1")
        answer = client.enrol(request)
        for _ in range(3):
            assert _post(registrar, enrolment_body(request)) == 201
        secret = device.activate_credential(
            answer.challenge.credential_blob, answer.challenge.encrypted_secret
        )
    view = client.activate(
        "edge-1", activation_proof(secret, enrolment_digest(enrolment_body(request)))
    )
    assert view.state == "active"
    assert view.ak_public == request.ak_public


def test_wrong_proofs_from_anyone_do_not_withdraw_the_nodes_challenge(
    make_swtpm: MakeSwtpm, registrar: RunningRegistrar, client: RegistrarClient
) -> None:
    """Rule: a wrong proof withdraws nothing (a 256-bit proof cannot be guessed; a limit of
    wrong proofs lets anyone cancel the node's enrolment)."""
    with TpmDevice(make_swtpm().tcti) as device:
        request = _genuine_request(device, "edge-1")
        answer = client.enrol(request)
        for guess in range(5):
            refused = registrar.post("/v1/agents/edge-1/activate", {"proof": f"{guess:064x}"})
            assert (refused.status_code, refused.json()["error"]["code"]) == (
                403,
                "activation_failed",
            )
        secret = device.activate_credential(
            answer.challenge.credential_blob, answer.challenge.encrypted_secret
        )
    proof = activation_proof(secret, enrolment_digest(enrolment_body(request)))
    assert client.activate("edge-1", proof).state == "active"


def test_ek_posted_under_another_agent_id_does_not_lock_out_the_node(
    make_swtpm: MakeSwtpm, registrar: RunningRegistrar, client: RegistrarClient
) -> None:
    """Squatting: the node's EK posted under ``squatter`` before the node enrols. Rule: only a
    proven identity claims an EK (counting pending enrolments gives the node
    ``ek_already_enrolled``)."""
    with TpmDevice(make_swtpm().tcti) as device:
        assert _post(registrar, _without_tpm(device, "squatter")) == 201
        view = enrol(device, client, "edge-1")
        fingerprint = ek_key_fingerprint(
            x509.load_der_x509_certificate(device.read_ek_certificate()).public_key()
        )
    assert (view.state, view.ek_fingerprint) == ("active", fingerprint)
    assert [agent.agent_id for agent in client.list_agents().agents] == ["edge-1"]
    # The squatter's enrolment went with the node's activation.
    with pytest.raises(ActivationFailed, match="no open enrolment"):
        client.activate("squatter", b"\x00" * 32)


def test_agent_id_posted_with_another_nodes_ek_does_not_lock_out_the_node(
    make_swtpm: MakeSwtpm, registrar: RunningRegistrar, client: RegistrarClient
) -> None:
    """Squatting an id: another node's public EK posted under the node's id before it enrols.
    Rule: only a proven identity claims an agent id (counting pending enrolments gives the node
    ``agent_id_taken``)."""
    node, other = make_swtpm(), make_swtpm()
    with TpmDevice(other.tcti) as other_device:
        assert _post(registrar, _without_tpm(other_device, "edge-1")) == 201
    with TpmDevice(node.tcti) as device:
        view = enrol(device, client, "edge-1")
        expected = x509.load_der_x509_certificate(device.read_ek_certificate()).public_key()
    assert view.ek_fingerprint == ek_key_fingerprint(expected)


def test_each_challenge_carries_a_fresh_secret(
    make_swtpm: MakeSwtpm, client: RegistrarClient
) -> None:
    """Two enrolments of the same request get different secrets (no constant challenge)."""
    with TpmDevice(make_swtpm().tcti) as device:
        request = _genuine_request(device, "edge-1")
        secrets = []
        for _ in range(2):
            answer = client.enrol(request)
            secrets.append(
                device.activate_credential(
                    answer.challenge.credential_blob, answer.challenge.encrypted_secret
                )
            )
    assert len(secrets[0]) == 32
    assert secrets[0] != secrets[1]


def test_activation_records_the_whole_proven_request(
    make_swtpm: MakeSwtpm, registrar: RunningRegistrar, client: RegistrarClient
) -> None:
    """Between the node's enrol and activate the attacker posts its own AK and address for the
    node's EK; the record holds the node's AK and address, nothing of the attacker's."""
    with TpmDevice(make_swtpm().tcti) as device:
        request = _genuine_request(device, "edge-1")
        answer = client.enrol(request)
        assert _post(registrar, _without_tpm(device, "edge-1")) == 201
        secret = device.activate_credential(
            answer.challenge.credential_blob, answer.challenge.encrypted_secret
        )
    view: AgentView = client.activate(
        "edge-1", activation_proof(secret, enrolment_digest(enrolment_body(request)))
    )
    assert (view.ak_public, view.agent_url) == (request.ak_public, request.agent_url)
