"""Keylime's DSSE-signed runtime policies: Keylime's own signed vectors verify, and every way of
getting an unverified policy in is refused with its own code.

Envelopes made here are signed by ``_sign`` below, written from the DSSE spec and Keylime's
``dsse.Sign`` independently of ``allowlists.ima.keylime_dsse``.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from allowlists.ima.keylime_dsse import KEYLIME_PAYLOAD_TYPE, key_id, load_verification_key
from allowlists.ima.keylime_import import convert_keylime_policy, import_keylime_policy
from geoattest.errors import (
    ConfigurationError,
    PolicyInvalid,
    PolicyKeyRequired,
    PolicyNotSigned,
    PolicySignatureInvalid,
)
from tests.paths import REPO_ROOT

POLICIES = REPO_ROOT / "tests" / "vectors" / "keylime" / "runtime_policy"
SIGNER_KEYID = "8114198dd64f6b1e07bd392274824d7adca5af8bfdc2fd2cf93a18db8f589e05"


def _text(name: str) -> str:
    return (POLICIES / name).read_text(encoding="utf-8")


def _key(name: str) -> ec.EllipticCurvePublicKey:
    return load_verification_key((POLICIES / name).read_bytes())


def _sign(
    payload: bytes,
    key: ec.EllipticCurvePrivateKey,
    *,
    payload_type: str = KEYLIME_PAYLOAD_TYPE,
    encode: str = "std",
) -> str:
    kind = payload_type.encode()
    pae = b"DSSEv1 " + b" ".join([str(len(kind)).encode(), kind, str(len(payload)).encode()])
    signature = key.sign(pae + b" " + payload, ec.ECDSA(hashes.SHA256()))

    def b64(data: bytes) -> str:
        if encode == "hex":
            return data.hex()
        if encode == "url":
            return base64.urlsafe_b64encode(data).decode()
        return base64.standard_b64encode(data).decode()

    return json.dumps(
        {
            "payload": b64(payload),
            "payloadType": payload_type,
            "signatures": [{"keyid": "chosen by the signer", "sig": b64(signature)}],
        }
    )


def test_keylimes_signed_policy_verifies_and_is_the_plain_one() -> None:
    conversion = convert_keylime_policy(
        _text("runtime-policy-test-signed.json"), key=_key("runtime-policy-pubkey.pub")
    )
    plain = import_keylime_policy(_text("runtime-policy-test.json"))
    assert conversion.policy.digests == plain.digests
    assert conversion.policy.keyrings == plain.keyrings
    assert conversion.policy.meta["keylime_signer_key"] == SIGNER_KEYID
    assert f"DSSE signature verified (signer key {SIGNER_KEYID})" in conversion.notes
    assert key_id(_key("runtime-policy-pubkey.pub")) == SIGNER_KEYID


def test_keylimes_bad_signature_vector_is_refused() -> None:
    with pytest.raises(PolicySignatureInvalid, match="altered after signing"):
        convert_keylime_policy(
            _text("runtime-policy-test-signed-bad.json"), key=_key("runtime-policy-pubkey.pub")
        )


def test_a_payload_changed_after_signing_is_refused() -> None:
    envelope = json.loads(_text("runtime-policy-test-signed.json"))
    policy = json.loads(base64.b64decode(envelope["payload"]))
    policy["digests"]["/usr/bin/evil"] = ["00" * 32]
    envelope["payload"] = base64.b64encode(json.dumps(policy).encode()).decode()
    with pytest.raises(PolicySignatureInvalid, match="altered after signing"):
        convert_keylime_policy(json.dumps(envelope), key=_key("runtime-policy-pubkey.pub"))


def test_a_signature_that_does_not_decode_does_not_verify() -> None:
    envelope = json.loads(_text("runtime-policy-test-signed.json"))
    envelope["signatures"] = [{"sig": "%%%"}]
    with pytest.raises(PolicySignatureInvalid, match=r"signer\(s\) \(none\)"):
        convert_keylime_policy(json.dumps(envelope), key=_key("runtime-policy-pubkey.pub"))


def test_the_wrong_key_is_refused_naming_the_signer() -> None:
    with pytest.raises(PolicySignatureInvalid, match=f"signer\\(s\\) {SIGNER_KEYID}: wrong key"):
        convert_keylime_policy(
            _text("runtime-policy-test-signed.json"), key=_key("sign/ec-p521-public.pem")
        )


def test_a_signed_policy_without_a_key_is_never_imported() -> None:
    with pytest.raises(PolicyKeyRequired, match="--keylime-key"):
        convert_keylime_policy(_text("runtime-policy-test-signed.json"))


def test_a_plain_policy_is_refused_when_a_signature_is_asked_for() -> None:
    with pytest.raises(PolicyNotSigned, match="unsigned"):
        convert_keylime_policy(
            _text("runtime-policy-test.json"), key=_key("runtime-policy-pubkey.pub")
        )


def test_an_envelope_without_signatures_is_unsigned() -> None:
    envelope = json.loads(_text("runtime-policy-test-signed.json"))
    envelope["signatures"] = []
    with pytest.raises(PolicyNotSigned, match="no signature"):
        convert_keylime_policy(json.dumps(envelope), key=_key("runtime-policy-pubkey.pub"))


def test_a_payload_signed_for_another_purpose_is_not_a_policy() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    payload = _text("runtime-policy-test.json").encode()
    assert convert_keylime_policy(_sign(payload, key), key=key.public_key()).policy.digests
    other = _sign(payload, key, payload_type="application/vnd.in-toto+json")
    with pytest.raises(PolicyInvalid, match="payloadType"):
        convert_keylime_policy(other, key=key.public_key())


@pytest.mark.parametrize("encode", ["url", "hex"])
def test_encodings_keylime_decodes_are_accepted(encode: str) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    payload = _text("runtime-policy-test.json").encode()
    envelope = _sign(payload, key, encode=encode)
    assert convert_keylime_policy(envelope, key=key.public_key()).policy.digests


def test_the_x509_backend_certificate_is_a_key() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dsse_lib")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    envelope = _sign(_text("runtime-policy-test.json").encode(), key)
    assert convert_keylime_policy(envelope, key=load_verification_key(pem)).policy.digests


def test_keys_keylime_cannot_sign_with_are_a_configuration_error() -> None:
    rsa_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ConfigurationError, match="ECDSA"):
        load_verification_key(rsa_pem)
    with pytest.raises(ConfigurationError, match="not a PEM"):
        load_verification_key(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"signatures": {"sig": "AA=="}}, r"\$\.signatures: expected a list"),
        ({"signatures": ["AA=="]}, r"\$\.signatures\[0\]: expected an object"),
        ({"signatures": [{"keyid": "x"}]}, r"\$\.signatures\[0\]\.sig: expected a string"),
        ({"payload": 5}, r"\$\.payload: expected a string"),
        ({"payloadType": None}, r"\$\.payloadType: expected a string"),
    ],
)
def test_malformed_envelopes_name_the_field(change: dict[str, object], where: str) -> None:
    envelope = {**json.loads(_text("runtime-policy-test-signed.json")), **change}
    with pytest.raises(PolicyInvalid, match=where):
        convert_keylime_policy(json.dumps(envelope), key=_key("runtime-policy-pubkey.pub"))
