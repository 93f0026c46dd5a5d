"""Enrolment end to end: real swtpm, real registrar over HTTP, real SQLite.

Each attack here fails if the registrar check that stops it is removed.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import pytest
import requests
from cryptography import x509

from agent._ek_template import signing_key_template
from agent.enrolment import AkSpec, default_agent_id, enrol
from agent.tpm_device import TpmDevice
from geoattest.dev.swtpm import SwtpmCa, SwtpmInstance
from geoattest.errors import (
    ActivationFailed,
    AgentIdTaken,
    AgentNotActive,
    AkInvalid,
    CredentialActivationRefused,
    EkAlreadyEnrolled,
    EkMismatch,
    EkNotPinned,
    EkUntrusted,
    NotFound,
)
from geoattest.registrar_client import RegistrarClient
from geoattest.wire import (
    EnrolRequest,
    JsonValue,
    activation_proof,
    enrolment_body,
    enrolment_digest,
)
from registrar.evidence import ek_key_fingerprint
from tests.support import MakeSwtpm
from tests.support.access import bearer
from tests.support.registrar_server import RunningRegistrar, recorded_facts, running_registrar

pytestmark = pytest.mark.swtpm


def _enrol_request(device: TpmDevice, agent_id: str) -> EnrolRequest:
    return EnrolRequest(
        agent_id=agent_id,
        ek_certificate=device.read_ek_certificate(),
        ek_public=device.ek_public(),
        ak_public=device.ensure_ak(),
    )


def test_genuine_tpm_enrols_and_is_listed(swtpm: SwtpmInstance, client: RegistrarClient) -> None:
    with TpmDevice(swtpm.tcti) as device:
        ek_cert = device.read_ek_certificate()
        view = enrol(device, client, None)
        ak_public = device.ensure_ak()
    assert view.agent_id == default_agent_id(ek_cert)
    assert view.state == "active"
    ek_key = x509.load_der_x509_certificate(ek_cert).public_key()
    assert view.ek_fingerprint == ek_key_fingerprint(ek_key)
    assert view.ak_public == ak_public
    assert view.activated_at is not None
    listed = client.list_agents().agents
    assert [agent.agent_id for agent in listed] == [view.agent_id]
    assert client.get_agent(view.agent_id).ak_name == view.ak_name


def test_rsa_ek_and_rsa_ak_enrol(make_swtpm: MakeSwtpm, client: RegistrarClient) -> None:
    rsa_tpm = make_swtpm(ecc=False)
    with TpmDevice(rsa_tpm.tcti, ek_algorithm="rsa") as device:
        view = enrol(device, client, "rsa-node", AkSpec(algorithm="rsa"))
    assert view.state == "active"


def test_tpm_from_foreign_manufacturer_is_refused(
    make_swtpm: MakeSwtpm, foreign_ca: SwtpmCa, client: RegistrarClient
) -> None:
    foreign = make_swtpm(ca=foreign_ca)
    with TpmDevice(foreign.tcti) as device, pytest.raises(EkUntrusted):
        enrol(device, client, "intruder")
    assert client.list_agents().agents == []


def test_pinned_policy_refuses_unpinned_ek_and_records_the_pin(
    tmp_path: Path, trust_dir: Path, make_swtpm: MakeSwtpm, database_url: str
) -> None:
    pinned, unpinned = make_swtpm(), make_swtpm()
    with TpmDevice(pinned.tcti) as device:
        fingerprint = hashlib.sha256(device.read_ek_certificate()).hexdigest()
    pins = tmp_path / "pins.toml"
    pins.write_text(
        f'[[pin]]\nsha256 = "{fingerprint}"\npurchase_order = "PO-2026-0042"\n'
        'asset_tag = "edge-fra-017"\n'
    )
    with running_registrar(
        tmp_path, trust_dir, pins_file=pins, database_url=database_url
    ) as registrar:
        client = registrar.client()
        with TpmDevice(unpinned.tcti) as device, pytest.raises(EkNotPinned):
            enrol(device, client, "unpinned")
        with TpmDevice(pinned.tcti) as device:
            view = enrol(device, client, "pinned")
        client.close()
    assert view.state == "active"
    assert view.purchase_order == "PO-2026-0042"
    assert view.asset_tag == "edge-fra-017"


def test_forged_activation_proof_is_refused_and_agent_stays_pending(
    swtpm: SwtpmInstance, client: RegistrarClient
) -> None:
    with TpmDevice(swtpm.tcti) as device:
        client.enrol(_enrol_request(device, "forger"))
    with pytest.raises(ActivationFailed, match="does not match"):
        client.activate("forger", b"\x00" * 32)
    with pytest.raises(AgentNotActive, match="enrolment pending"):
        client.get_agent("forger")
    assert client.list_agents().agents == []


def test_ak_from_another_tpm_cannot_be_activated(
    make_swtpm: MakeSwtpm, client: RegistrarClient
) -> None:
    """Attack: a genuine EK (copied off a real node) claimed with an AK living in another TPM."""
    victim, attacker = make_swtpm(), make_swtpm()
    with TpmDevice(victim.tcti) as victim_device, TpmDevice(attacker.tcti) as attacker_device:
        request = EnrolRequest(
            agent_id="hijack",
            ek_certificate=victim_device.read_ek_certificate(),
            ek_public=victim_device.ek_public(),
            ak_public=attacker_device.ensure_ak(),
        )
        answer = client.enrol(request)
        # The attacker's TPM holds the AK but not the victim's EK: it cannot open the credential.
        with pytest.raises(CredentialActivationRefused):
            attacker_device.activate_credential(
                answer.challenge.credential_blob, answer.challenge.encrypted_secret
            )
    with pytest.raises(ActivationFailed):
        client.activate("hijack", hashlib.sha256(b"guess").digest())
    with pytest.raises(AgentNotActive):
        client.get_agent("hijack")


@pytest.mark.parametrize(
    ("weakness", "reason"),
    [({"fixed_tpm": False}, "FIXED_TPM"), ({"restricted": False}, "RESTRICTED")],
)
def test_ak_that_could_leave_the_tpm_or_sign_anything_is_refused(
    swtpm: SwtpmInstance, client: RegistrarClient, weakness: dict[str, bool], reason: str
) -> None:
    with TpmDevice(swtpm.tcti) as device:
        weak_ak = device.create_signing_key(signing_key_template("ecc", **weakness))
        request = EnrolRequest(
            agent_id="weak-ak",
            ek_certificate=device.read_ek_certificate(),
            ek_public=device.ek_public(),
            ak_public=weak_ak,
        )
    with pytest.raises(AkInvalid, match=reason):
        client.enrol(request)
    with pytest.raises(NotFound):
        client.get_agent("weak-ak")


def test_agent_restart_keeps_its_ak_and_identity(
    swtpm: SwtpmInstance, client: RegistrarClient
) -> None:
    with TpmDevice(swtpm.tcti) as device:
        first = enrol(device, client, "restarting")
    swtpm.restart()
    with TpmDevice(swtpm.tcti) as device:
        second = enrol(device, client, "restarting")
    assert second.ak_name == first.ak_name
    assert second.ek_fingerprint == first.ek_fingerprint
    assert second.state == "active"


def test_agent_id_keeps_its_ek(make_swtpm: MakeSwtpm, client: RegistrarClient) -> None:
    owner, other = make_swtpm(), make_swtpm()
    with TpmDevice(owner.tcti) as device:
        original = enrol(device, client, "edge-01")
    with TpmDevice(other.tcti) as device, pytest.raises(AgentIdTaken):
        enrol(device, client, "edge-01")
    assert recorded_facts(client.get_agent("edge-01")) == recorded_facts(original)


def test_an_ek_belongs_to_one_agent_id(swtpm: SwtpmInstance, client: RegistrarClient) -> None:
    with TpmDevice(swtpm.tcti) as device:
        enrol(device, client, "first-name")
        with pytest.raises(EkAlreadyEnrolled):
            enrol(device, client, "second-name")


def test_delete_needs_an_admin_api_key(
    tmp_path: Path, trust_dir: Path, swtpm: SwtpmInstance, database_url: str
) -> None:
    with running_registrar(tmp_path, trust_dir, database_url=database_url) as registrar:
        client = RegistrarClient(registrar.url)
        with TpmDevice(swtpm.tcti) as device:
            enrol(device, client, "doomed")
        url = f"{registrar.url}/v1/agents/doomed"
        anonymous = requests.delete(url, timeout=5)
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "api_key_required"
        viewer = requests.delete(url, headers=bearer(registrar.reader_key), timeout=5)
        assert viewer.status_code == 403
        assert viewer.json()["error"]["code"] == "role_insufficient"
        registrar.client().delete_agent("doomed")
        with pytest.raises(NotFound):
            registrar.client().get_agent("doomed")
        client.close()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_malformed_bodies_get_400_with_codes_and_nothing_stored_is_lost(
    swtpm: SwtpmInstance, registrar: RunningRegistrar, client: RegistrarClient
) -> None:
    with TpmDevice(swtpm.tcti) as device:
        kept = enrol(device, client, "kept")
        good = _enrol_request(device, "kept").model_dump(mode="json")
    cases: list[tuple[object, int, str]] = [
        ("not an object", 400, "malformed_request"),
        ({}, 400, "malformed_request"),
        ({**good, "agent_id": "bad id"}, 400, "agent_id_invalid"),
        ({**good, "agent_id": ".."}, 400, "agent_id_invalid"),
        ({**good, "agent_id": 7}, 400, "malformed_request"),
        ({**good, "ak_public": "%%%"}, 400, "malformed_request"),
        ({**good, "ak_public": _b64(b"\x00\x05junk")}, 400, "ak_invalid"),
        ({**good, "ek_public": _b64(b"\xff" * 40)}, 400, "ek_mismatch"),
        ({**good, "ek_certificate": _b64(b"not a certificate")}, 400, "malformed_request"),
        ({**good, "ek_certificate": _b64(b"\x30\x82\xff\xff")}, 400, "malformed_request"),
    ]
    for body, status, code in cases:
        response = registrar.post("/v1/agents", body)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), body
    bad_activations: list[object] = [{}, {"proof": "zz"}, {"proof": 5}, []]
    for body in bad_activations:
        response = registrar.post("/v1/agents/kept/activate", body)
        assert response.status_code == 400, body
    raw = requests.post(
        registrar.url + "/v1/agents",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert raw.status_code == 400
    assert recorded_facts(client.get_agent("kept")) == recorded_facts(kept)


def test_genuine_ek_certificate_with_another_tpms_ek_public_is_refused(
    make_swtpm: MakeSwtpm, client: RegistrarClient
) -> None:
    """Attack: a real EK certificate (copied off a node) presented with the attacker's own EK
    public area, so that the credential would be encrypted to a key the attacker holds."""
    victim, attacker = make_swtpm(), make_swtpm()
    with TpmDevice(victim.tcti) as victim_device, TpmDevice(attacker.tcti) as attacker_device:
        request = EnrolRequest(
            agent_id="ek-swap",
            ek_certificate=victim_device.read_ek_certificate(),
            ek_public=attacker_device.ek_public(),
            ak_public=attacker_device.ensure_ak(),
        )
    with pytest.raises(EkMismatch, match="does not hold the key of the EK certificate"):
        client.enrol(request)
    with pytest.raises(NotFound):
        client.get_agent("ek-swap")


def test_request_altered_on_its_way_is_never_activated(
    swtpm: SwtpmInstance, client: RegistrarClient
) -> None:
    """Attack on the enrolment path: the agent's request reaches the registrar with another
    evidence API address (the attacker's). The TPM still opens the credential, but the proof
    binds the request the agent sent, so the altered one cannot be activated."""
    with TpmDevice(swtpm.tcti) as device:
        sent = _enrol_request(device, "mitm").model_copy(
            update={"agent_url": "https://10.0.0.7:9002"}
        )
        received = sent.model_copy(update={"agent_url": "https://203.0.113.66:9002"})
        answer = client.enrol(received)
        secret = device.activate_credential(
            answer.challenge.credential_blob, answer.challenge.encrypted_secret
        )
    proof = activation_proof(secret, enrolment_digest(enrolment_body(sent)))
    with pytest.raises(ActivationFailed, match="does not match"):
        client.activate("mitm", proof)
    with pytest.raises(AgentNotActive):
        client.get_agent("mitm")


def test_newer_agents_field_is_ignored_but_bound_by_the_proof(
    swtpm: SwtpmInstance, registrar: RunningRegistrar, client: RegistrarClient
) -> None:
    """Skew: a field this registrar does not know is accepted and ignored, and still covered by
    the proof (the digest is over the object as received): the request as sent activates, the
    same request with that field altered on its way does not."""
    with TpmDevice(swtpm.tcti) as device:
        sent = {**enrolment_body(_enrol_request(device, "newer")), "antenna_model": "ANN-MB"}
        altered = {**sent, "antenna_model": "spoofer"}
        proof_for_sent = _proofs_over(sent, {"altered": altered, "sent": sent}, device, registrar)
    with pytest.raises(ActivationFailed, match="does not match"):
        # the proof for the altered enrolment's secret, over what the agent sent
        client.activate("newer", proof_for_sent["altered"])
    assert client.activate("newer", proof_for_sent["sent"]).state == "active"


def _proofs_over(
    sent: Mapping[str, JsonValue],
    posted: Mapping[str, Mapping[str, JsonValue]],
    device: TpmDevice,
    registrar: RunningRegistrar,
) -> dict[str, bytes]:
    """Post each enrolment of ``posted`` in turn and, for each one's challenge, the activation
    proof the agent makes over the enrolment it ``sent`` (what an on-path change cannot alter)."""
    proofs = {}
    for name, body in posted.items():
        response = registrar.post("/v1/agents", body)
        assert response.status_code == 201, response.text
        challenge = response.json()["challenge"]
        secret = device.activate_credential(
            base64.b64decode(challenge["credential_blob"]),
            base64.b64decode(challenge["encrypted_secret"]),
        )
        proofs[name] = activation_proof(secret, enrolment_digest(sent))
    return proofs


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b'{"agent_id": "edge-01", "x": NaN}', "malformed_request"),
        (b'{"agent_id": "edge-01", "x": Infinity}', "malformed_request"),
        (b'{"agent_id": "edge-01", "x": "\\ud800"}', "malformed_request"),  # lone surrogate
        (b'{"agent_id": "edge-01", "x": 123456789012345678901234567890}', "malformed_request"),
        (b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "malformed_request"),
        (b"\xff\xfe{}", "malformed_request"),
        (b'["agent_id"]', "malformed_request"),
        (b'{"agent_id": "edge-1\\n"}', "agent_id_invalid"),
    ],
)
def test_enrol_bodies_without_one_meaning_get_400(
    registrar: RunningRegistrar, raw: bytes, code: str
) -> None:
    response = requests.post(
        registrar.url + "/v1/agents",
        data=raw,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert (response.status_code, response.json()["error"]["code"]) == (400, code)


def test_duplicate_names_are_refused_not_resolved(
    swtpm: SwtpmInstance, registrar: RunningRegistrar
) -> None:
    """A name given twice means what the parser makes of it (first or last wins): refused, so
    that what is stored and what the proof binds are never a parser's choice."""
    with TpmDevice(swtpm.tcti) as device:
        body = json.dumps(enrolment_body(_enrol_request(device, "twice")))
    raw = body[:-1] + ', "agent_id": "someone-else"}'
    response = requests.post(
        registrar.url + "/v1/agents",
        data=raw.encode(),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert (response.status_code, response.json()["error"]["code"]) == (400, "malformed_request")
    assert "duplicate names" in response.json()["error"]["message"]


def test_the_enrolled_gnss_receiver_is_bound_by_the_proof(
    swtpm: SwtpmInstance, registrar: RunningRegistrar, client: RegistrarClient
) -> None:
    """Attack: an on-path party swaps the receiver an agent enrols (so that its own receiver
    would pass a policy that requires the enrolled one): the proof covers the field, so the
    altered enrolment never activates, and the registrar records the receiver as sent."""
    receiver = {"source": "serial", "texts": ["HW UBX-M80xx 00080000"], "device": "/dev/ttyACM0"}
    swapped = {**receiver, "texts": ["HW UBX-G70xx 00070000"]}
    with TpmDevice(swtpm.tcti) as device:
        sent = {**enrolment_body(_enrol_request(device, "rcv")), "gnss_receiver": receiver}
        altered = {**sent, "gnss_receiver": swapped}
        proofs = _proofs_over(sent, {"altered": altered, "sent": sent}, device, registrar)
    with pytest.raises(ActivationFailed, match="does not match"):
        client.activate("rcv", proofs["altered"])
    view = client.activate("rcv", proofs["sent"])
    assert view.gnss_receiver is not None
    assert view.gnss_receiver.texts == ["HW UBX-M80xx 00080000"]
    assert view.gnss_receiver.device == "/dev/ttyACM0"
