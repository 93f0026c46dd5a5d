"""TPM-signed location evidence end to end: real swtpm, real registrar over HTTP, real captures.

The location key is created in the swtpm and certified by its AK; the registrar records it at
enrolment (or later) and refuses keys that could leave the TPM or that another TPM certified;
evidence signed in the TPM passes ``verifier.core.location.check_location`` and evidence signed
anywhere else does not. Each attack fails if the check that stops it is removed.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import os

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from agent._ek_template import signing_key_template
from agent.location import LocationProvider, ensure_location_key
from agent.tpm_device import DEFAULT_LOCATION_KEY_HANDLE, TpmDevice
from geoattest.dev.swtpm import SwtpmInstance
from geoattest.errors import (
    AgentNotActive,
    GnssUnavailable,
    LocationEvidenceInvalid,
    LocationImplausible,
    LocationKeyInvalid,
    LocationNonceMismatch,
    NotFound,
)
from geoattest.registrar_client import RegistrarClient
from geoattest.wire import (
    AgentView,
    EnrolRequest,
    LocationKeyWire,
    activation_proof,
    enrolment_body,
    enrolment_digest,
    location_key_qualifying_data,
)
from geofence import LocationPolicy, SourceKind, ZoneDecision, ZoneSet, decode_evidence, load_zones
from geofence.nmea import split_lines
from tests.paths import vector
from tests.support import MakeSwtpm
from tests.support.registrar_server import RunningRegistrar
from tpm import (
    TpmPublic,
    TpmSignature,
    encode_tpm2b_public,
    encode_tpmt_signature,
    location_key_public,
    parse_tpm2b_public,
)
from verifier.core.location import LocationRoundPolicy, LocationVerdict, check_location

pytestmark = pytest.mark.swtpm

WEAK_KEY_HANDLE = 0x81010009


@functools.cache
def countries() -> ZoneSet:
    text = vector("zones/ne_110m_admin_0_countries.geojson").read_text(encoding="utf-8")
    return load_zones(text, repair=True)


def black_forest_lines() -> list[bytes]:
    """NaviLock NL-8002U (u-blox 8) driving near Schramberg, DE: 9 fixes, receiver banner."""
    return split_lines(vector("nmea/nl2008u.log").read_bytes())


def germany() -> LocationRoundPolicy:
    return LocationRoundPolicy(thresholds=LocationPolicy(), zones=countries(), zone_ids=("DEU",))


def enrol_request(
    device: TpmDevice, agent_id: str, location_key: LocationKeyWire | None
) -> EnrolRequest:
    return EnrolRequest(
        agent_id=agent_id,
        ek_certificate=device.read_ek_certificate(),
        ek_public=device.ek_public(),
        ak_public=device.ensure_ak(),
        location_key=location_key,
    )


def enrol_and_activate(
    device: TpmDevice, client: RegistrarClient, agent_id: str, *, with_location_key: bool = True
) -> AgentView:
    """The agent's enrolment with the location key (what ``agent.enrolment.enrol`` will send)."""
    device.ensure_ak()
    key = ensure_location_key(device, agent_id=agent_id) if with_location_key else None
    request = enrol_request(device, agent_id, key)
    answer = client.enrol(request)
    with pytest.raises(AgentNotActive):  # nothing is recorded before the AK is proven
        client.get_agent(agent_id)
    secret = device.activate_credential(
        answer.challenge.credential_blob, answer.challenge.encrypted_secret
    )
    digest = enrolment_digest(enrolment_body(request))
    return client.activate(agent_id, activation_proof(secret, digest))


def registered_key(view: AgentView) -> TpmPublic:
    assert view.location_key_public is not None
    return parse_tpm2b_public(view.location_key_public)


def fed_provider(device: TpmDevice, lines: list[bytes]) -> LocationProvider:
    provider = LocationProvider(None, device, wait_for_fix_s=0.0, source_kind=SourceKind.SERIAL)
    for line in lines:
        provider.feed(line)
    return provider


def verify(evidence: bytes, signature: bytes, key: TpmPublic, nonce: bytes) -> LocationVerdict:
    """The verifier's location check, one second after the fix was taken."""
    signed_at = decode_evidence(evidence).utc
    return check_location(
        evidence=evidence,
        signature=signature,
        location_key=key,
        nonce=nonce,
        policy=germany(),
        track=(),
        now=signed_at + dt.timedelta(seconds=1),
    )


def test_tpm_signed_evidence_passes_and_the_key_is_on_record(
    swtpm: SwtpmInstance, client: RegistrarClient
) -> None:
    nonce = os.urandom(32)
    with TpmDevice(swtpm.tcti) as device:
        view = enrol_and_activate(device, client, "geo-node")
        signed = fed_provider(device, black_forest_lines()).signed_location(nonce)
    assert view.location_key_certify_attest is not None
    assert client.get_agent("geo-node").location_key_public == view.location_key_public
    verdict = verify(signed.evidence, signed.signature, registered_key(view), nonce)
    assert verdict.decision is ZoneDecision.INSIDE
    assert verdict.zone_id == "DEU"
    evidence = decode_evidence(signed.evidence)
    assert evidence.receiver.startswith("u-blox AG")  # the receiver's identity is signed too
    assert evidence.nmea_digest == signed.fix.nmea_digest
    # evidence v3: the per-satellite C/N0, the source kind and the vertical accuracy are
    # signed, and the verifier's fix has them
    assert (evidence.version, evidence.source) == (3, "serial")
    assert signed.fix.vertical_accuracy_m is not None
    assert verdict.fix.vertical_accuracy_m == round(signed.fix.vertical_accuracy_m, 3)
    assert len(evidence.cn0_dbhz) == len(signed.fix.cn0_values()) >= 6
    assert sorted(verdict.fix.cn0_values()) == sorted(
        float(round(v)) for v in signed.fix.cn0_values()
    )


def test_replayed_tpm_signed_evidence_is_refused(
    swtpm: SwtpmInstance, client: RegistrarClient
) -> None:
    """Attack: genuine evidence of an earlier round presented for a new nonce."""
    old_nonce, new_nonce = os.urandom(32), os.urandom(32)
    with TpmDevice(swtpm.tcti) as device:
        view = enrol_and_activate(device, client, "replayer")
        signed = fed_provider(device, black_forest_lines()).signed_location(old_nonce)
    with pytest.raises(LocationNonceMismatch):
        verify(signed.evidence, signed.signature, registered_key(view), new_nonce)


def test_evidence_signed_by_a_software_key_is_refused(
    swtpm: SwtpmInstance, client: RegistrarClient
) -> None:
    """Attack: the node's software writes and signs its own evidence outside the TPM, with a
    key that has every attribute a TPM key would show."""
    nonce = os.urandom(32)
    with TpmDevice(swtpm.tcti) as device:
        view = enrol_and_activate(device, client, "forger")
        genuine = fed_provider(device, black_forest_lines()).signed_location(nonce)
    soft = ec.generate_private_key(ec.SECP256R1())
    der = soft.sign(genuine.evidence, ec.ECDSA(hashes.SHA256()))
    forged = encode_tpmt_signature(TpmSignature.ecdsa_from_der(der))
    with pytest.raises(LocationEvidenceInvalid):
        verify(genuine.evidence, forged, registered_key(view), nonce)


def test_software_key_cannot_be_registered_as_the_location_key(
    swtpm: SwtpmInstance, client: RegistrarClient
) -> None:
    """Attack: register a software key (fixedTPM claimed) with the TPM's certify of another key."""
    soft = ec.generate_private_key(ec.SECP256R1())
    soft_public = encode_tpm2b_public(location_key_public(soft.public_key()))
    with TpmDevice(swtpm.tcti) as device:
        device.ensure_ak()
        genuine = ensure_location_key(device, agent_id="soft-key")
        claimed = genuine.model_copy(update={"public": soft_public})
        with pytest.raises(LocationKeyInvalid, match="certified name mismatch"):
            client.enrol(enrol_request(device, "soft-key", claimed))
    with pytest.raises(NotFound):
        client.get_agent("soft-key")


def test_location_key_certified_by_another_tpms_ak_is_refused(
    make_swtpm: MakeSwtpm, client: RegistrarClient
) -> None:
    """Attack: a genuine node's EK and AK enrolled with a location key living in another TPM."""
    node, other = make_swtpm(), make_swtpm()
    with TpmDevice(node.tcti) as node_device, TpmDevice(other.tcti) as other_device:
        node_ak = parse_tpm2b_public(node_device.ensure_ak())
        other_device.ensure_ak()
        # The other TPM certifies its own key with the qualifying data the node's would carry.
        public = other_device.create_location_key()
        attest, signature = other_device.certify(
            DEFAULT_LOCATION_KEY_HANDLE, location_key_qualifying_data("victim", node_ak.name)
        )
        stolen = LocationKeyWire(public=public, certify_attest=attest, certify_signature=signature)
        with pytest.raises(LocationKeyInvalid, match="not certified by the agent's AK"):
            client.enrol(enrol_request(node_device, "victim", stolen))
    with pytest.raises(NotFound):
        client.get_agent("victim")


def test_location_key_without_fixed_tpm_is_refused(
    swtpm: SwtpmInstance, client: RegistrarClient
) -> None:
    """Attack: a key the TPM can duplicate out, validly certified by the AK."""
    with TpmDevice(swtpm.tcti) as device:
        ak = parse_tpm2b_public(device.ensure_ak())
        public = device.create_signing_key(
            signing_key_template("ecc", restricted=False, fixed_tpm=False),
            handle=WEAK_KEY_HANDLE,
        )
        attest, signature = device.certify(
            WEAK_KEY_HANDLE, location_key_qualifying_data("leaky", ak.name)
        )
        weak = LocationKeyWire(public=public, certify_attest=attest, certify_signature=signature)
        with pytest.raises(LocationKeyInvalid, match="FIXED_TPM"):
            client.enrol(enrol_request(device, "leaky", weak))


def test_certification_for_another_agent_id_is_refused(
    swtpm: SwtpmInstance, client: RegistrarClient
) -> None:
    with TpmDevice(swtpm.tcti) as device:
        device.ensure_ak()
        key = ensure_location_key(device, agent_id="someone-else")
        with pytest.raises(LocationKeyInvalid, match="extraData mismatch"):
            client.enrol(enrol_request(device, "me", key))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_location_key_registered_later_for_an_active_agent(
    make_swtpm: MakeSwtpm, registrar: RunningRegistrar, client: RegistrarClient
) -> None:
    node, other = make_swtpm(), make_swtpm()
    url = f"{registrar.url}/v1/agents/late/location-key"
    with TpmDevice(node.tcti) as device, TpmDevice(other.tcti) as other_device:
        client.enrol(enrol_request(device, "late", None))  # pending: no AK proven yet
        key = ensure_location_key(device, agent_id="late")
        body = key.model_dump(mode="json")
        refused = requests.put(url, json=body, timeout=10)
        assert (refused.status_code, refused.json()["error"]["code"]) == (409, "agent_not_active")
        enrol_and_activate(device, client, "late", with_location_key=False)
        assert client.get_agent("late").location_key_public is None
        # another TPM's certification is refused...
        node_ak = parse_tpm2b_public(device.ensure_ak())
        other_device.ensure_ak()
        public = other_device.create_location_key()
        attest, sig = other_device.certify(
            DEFAULT_LOCATION_KEY_HANDLE, location_key_qualifying_data("late", node_ak.name)
        )
        stolen = {"public": _b64(public), "certify_attest": _b64(attest),
                  "certify_signature": _b64(sig)}  # fmt: skip
        refused = requests.put(url, json=stolen, timeout=10)
        assert (refused.status_code, refused.json()["error"]["code"]) == (
            400,
            "location_key_invalid",
        )
        assert client.get_agent("late").location_key_public is None
        # ...so is the node's own without a registrar nonce...
        refused = requests.put(url, json=body, timeout=10)
        assert refused.json()["error"]["code"] == "location_key_invalid"
        assert "challenge" in refused.json()["error"]["message"]
        # ...and it is recorded once certified over a fresh one.
        nonce = requests.post(f"{url}/challenge", timeout=10).json()["nonce"]
        key = ensure_location_key(device, agent_id="late", nonce=bytes.fromhex(nonce))
        accepted = requests.put(url, json=key.model_dump(mode="json"), timeout=10)
    assert accepted.status_code == 200
    assert AgentView.model_validate(accepted.json()).location_key_public == key.public
    assert client.get_agent("late").location_key_public == key.public


def _with_constant_cn0(line: bytes, cn0: bytes = b"40") -> bytes:
    """A GSV sentence with every reported C/N0 set to ``cn0``, checksum recomputed."""
    text = line.rstrip(b"\r")
    if text[3:6] != b"GSV":
        return line
    body, _ = text[1:].split(b"*")
    fields = body.split(b",")
    groups = (len(fields) - 4) // 4
    for g in range(groups):
        i = 4 + 4 * g + 3
        if fields[i]:
            fields[i] = cn0
    body = b",".join(fields)
    checksum = functools.reduce(lambda a, b: a ^ b, body, 0)
    return b"$" + body + b"*" + f"{checksum:02X}".encode()


def test_agent_refuses_to_sign_a_fix_with_uniform_cn0(swtpm: SwtpmInstance) -> None:
    """Attack (RF spoofer): every satellite at one power. The agent screens it before signing
    (defence in depth; the verifier checks the signed C/N0 too, test below)."""
    spoofed = [_with_constant_cn0(line) for line in black_forest_lines()]
    with TpmDevice(swtpm.tcti) as device:
        device.ensure_ak()
        ensure_location_key(device, agent_id="spoofed")
        provider = fed_provider(device, spoofed)
        assert provider.stats().rejected == 0  # the rewritten sentences are well formed
        assert len(provider.track()[-1].cn0_values()) >= 6
        with pytest.raises(LocationImplausible) as caught:
            provider.signed_location(os.urandom(32))
        assert caught.value.reason == "location_cn0_uniform"
        genuine = fed_provider(device, black_forest_lines())
        assert genuine.signed_location(os.urandom(32)).evidence


def test_verifier_refuses_tpm_signed_uniform_cn0(swtpm: SwtpmInstance) -> None:
    """The same spoofed fix from an agent whose own screen is off (misconfigured, or the node
    vouching for itself is not trusted): the TPM signs it, the verifier refuses it."""
    spoofed = [_with_constant_cn0(line) for line in black_forest_lines()]
    nonce = os.urandom(32)
    with TpmDevice(swtpm.tcti) as device:
        device.ensure_ak()
        ensure_location_key(device, agent_id="unscreened")
        key = parse_tpm2b_public(device.read_public(DEFAULT_LOCATION_KEY_HANDLE))
        provider = LocationProvider(
            None,
            device,
            wait_for_fix_s=0.0,
            screen_policy=LocationPolicy(cn0_min_stddev_db=0.0),
            source_kind=SourceKind.SERIAL,
        )
        for line in spoofed:
            provider.feed(line)
        signed = provider.signed_location(nonce)
    assert {v for _, v in decode_evidence(signed.evidence).cn0_dbhz} == {40}
    with pytest.raises(LocationImplausible) as caught:
        verify(signed.evidence, signed.signature, key, nonce)
    assert caught.value.code == "location_implausible"
    assert caught.value.reason == "location_cn0_uniform"


def test_a_fix_is_signed_once(swtpm: SwtpmInstance) -> None:
    """Two rounds before the receiver's next fix: the second gets no (stale, repeated) fix."""
    lines = black_forest_lines()
    with TpmDevice(swtpm.tcti) as device:
        device.ensure_ak()
        ensure_location_key(device, agent_id="fast-rounds")
        provider = fed_provider(device, lines[: len(lines) // 2])
        first = provider.signed_location(os.urandom(32))
        with pytest.raises(GnssUnavailable, match="no new GNSS fix"):
            provider.signed_location(os.urandom(32))
        for line in lines[len(lines) // 2 :]:
            provider.feed(line)
        second = provider.signed_location(os.urandom(32))
    assert second.fix.utc is not None
    assert first.fix.utc is not None
    assert second.fix.utc > first.fix.utc
    assert second.fix.nmea_digest != first.fix.nmea_digest
