"""Keylime's signed runtime policies: a DSSE envelope, verified before anything in it is used.

``keylime_sign_runtime_policy`` (``keylime/policy/sign_runtime_policy.py``) wraps a policy as

    {"payload": b64(policy JSON), "payloadType": "application/vnd.keylime+json",
     "signatures": [{"keyid": sha256-hex of the signer's public key PEM, "sig": b64(DER ECDSA)}]}

and signs DSSE's pre-authentication encoding ``PAE = b"DSSEv1 %d %s %d %s" % (len(type), type,
len(payload), payload)`` with ECDSA over SHA-256 (``keylime/dsse/dsse.py``, ``ecdsa.py``; the
x509 backend signs the same way and puts its certificate, base64, in ``keyid``).

What is checked, in order (each failure has its own error code):

1. the text is an envelope (``payload``, ``payloadType``, ``signatures``) with the right types;
2. ``payloadType`` is Keylime's: a payload signed for another purpose is not a policy (Keylime
   itself does not check this; a Keylime-made envelope always has it);
3. the envelope carries at least one signature (``PolicyNotSigned`` otherwise);
4. at least one signature verifies over the PAE under the key the operator gave. ``keyid`` is
   unauthenticated: it only picks the message, never the key.

Base64 is decoded as Keylime's ``b64dec`` does (hex first, then standard, then URL-safe
base64), so the bytes verified are exactly the bytes Keylime verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from geoattest.errors import (
    ConfigurationError,
    PolicyInvalid,
    PolicyNotSigned,
    PolicySignatureInvalid,
)

KEYLIME_PAYLOAD_TYPE = "application/vnd.keylime+json"
_ENVELOPE_KEYS = frozenset({"payload", "payloadType", "signatures"})


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedPayload:
    """The payload of an envelope one of whose signatures verified under ``key_id``."""

    payload: bytes
    key_id: str  # Keylime's keyid of the verifying key: sha256 hex of its SubjectPublicKeyInfo PEM


def is_dsse_envelope(document: Mapping[str, object]) -> bool:
    """True when a parsed JSON object is a DSSE envelope (Keylime's test: it has ``payload``)."""
    return "payload" in document


def load_verification_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    """The EC public key in ``pem``: a public key, or the certificate of Keylime's x509 backend.

    Raises ConfigurationError when it is neither, or not an EC key (Keylime signs with ECDSA only).
    """
    key: object
    try:
        if b"-----BEGIN CERTIFICATE-----" in pem:
            key = x509.load_pem_x509_certificate(pem).public_key()
        else:
            key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise ConfigurationError(f"not a PEM public key or certificate: {e}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigurationError(
            f"a {type(key).__name__} cannot verify a Keylime policy: Keylime signs with ECDSA"
        )
    return key


def key_id(key: ec.EllipticCurvePublicKey) -> str:
    """Keylime's keyid of ``key`` (``keylime/dsse/ecdsa.py``: sha256 of the public key PEM)."""
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(pem).hexdigest()


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what the signatures cover."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def keylime_b64decode(text: str, where: str) -> bytes:
    """Keylime's ``dsse.b64dec``: hex if it is hex, else base64 (standard, then URL-safe)."""
    raw = text.encode("utf-8")
    try:
        decoded = binascii.unhexlify(raw)
    except binascii.Error:
        decoded = b""
    if decoded:
        return decoded
    try:
        return base64.b64decode(raw, validate=True)
    except binascii.Error:
        pass
    try:
        return base64.b64decode(raw, altchars=b"-_", validate=True)
    except binascii.Error:
        raise PolicyInvalid(f"{where}: neither hex nor base64") from None


def _string(document: Mapping[str, object], key: str, where: str) -> str:
    value = document.get(key)
    if not isinstance(value, str):
        raise PolicyInvalid(f"{where}.{key}: expected a string")
    return value


def open_keylime_envelope(
    envelope: Mapping[str, object], key: ec.EllipticCurvePublicKey
) -> VerifiedPayload:
    """Verify a parsed Keylime DSSE envelope under ``key`` and return its payload.

    Raises PolicyInvalid (not an envelope, wrong payload type, malformed fields), PolicyNotSigned
    (no signatures) or PolicySignatureInvalid (none verifies: wrong key or bad signature).
    """
    missing = sorted(_ENVELOPE_KEYS - set(envelope))
    if missing:
        raise PolicyInvalid(f"$: not a DSSE envelope, missing {', '.join(map(repr, missing))}")
    payload_type = _string(envelope, "payloadType", "$")
    if payload_type != KEYLIME_PAYLOAD_TYPE:
        raise PolicyInvalid(
            f"$.payloadType: {payload_type[:80]!r} is not a Keylime policy "
            f"({KEYLIME_PAYLOAD_TYPE!r})"
        )
    payload = keylime_b64decode(_string(envelope, "payload", "$"), "$.payload")
    signatures = envelope["signatures"]
    if not isinstance(signatures, list):
        raise PolicyInvalid("$.signatures: expected a list")
    if not signatures:
        raise PolicyNotSigned("the DSSE envelope carries no signature ($.signatures is empty)")
    signed = pae(payload_type, payload)
    expected_id = key_id(key)
    named: list[str] = []
    for index, signature in enumerate(signatures):
        where = f"$.signatures[{index}]"
        if not isinstance(signature, dict):
            raise PolicyInvalid(f"{where}: expected an object")
        encoded = _string(signature, "sig", where)
        keyid = signature.get("keyid")
        named.append(keyid if isinstance(keyid, str) else "(none)")
        # A signature that does not decode is one that does not verify (as in Keylime).
        try:
            key.verify(keylime_b64decode(encoded, where), signed, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, PolicyInvalid, ValueError):  # ValueError: not DER ECDSA
            continue
        return VerifiedPayload(payload=payload, key_id=expected_id)
    raise PolicySignatureInvalid(_refusal(named, expected_id))


def _refusal(named: list[str], expected_id: str) -> str:
    if expected_id in named:
        return (
            f"the signature by key {expected_id} does not verify: the envelope was altered "
            "after signing (payload, type or signature)"
        )
    shown = ", ".join(name[:64] for name in named)
    return (
        f"no signature verifies under the key given (keyid {expected_id}); the envelope names "
        f"signer(s) {shown}: wrong key?"
    )
