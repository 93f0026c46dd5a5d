"""Compact JWS (RFC 7515) with ES256 only, for what the verifier signs besides tokens:
transparency-log checkpoints and residency-bundle manifests (the registrar's identity records
follow the same rules).

Signing takes a callable that returns the raw 64-byte ``r ‖ s`` (``SigningKey.sign``).
Verification is strict, because an auditor runs it on bytes an attacker may have written:

- exactly three base64url parts without padding, the header a JSON object;
- ``alg`` is ``ES256`` (never ``none``, never HMAC) and ``typ`` is the one the caller expects,
  so a manifest cannot be passed off as a checkpoint nor a token as either;
- no ``crit`` member, and no key of its own (``jwk``, ``jku``, ``x5c``, ``x5u``): a signature is
  checked only with a key the caller was given, chosen by ``kid``;
- the signature is 64 bytes and verifies over ``header.payload`` as sent.

Raises ``SignatureInvalid`` naming what failed. Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from geoattest.errors import SignatureInvalid

ALGORITHM = "ES256"
EMBEDDED_KEY_MEMBERS = ("jwk", "jku", "x5c", "x5u")
MAX_JWS_BYTES = 1 << 20


class Signer(Protocol):
    """What signs: a key id and raw ES256 signatures (``verifier.signing.keyring.SigningKey``)."""

    @property
    def kid(self) -> str: ...

    def sign(self, data: bytes) -> bytes: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedJws:
    payload: bytes
    kid: str
    header: Mapping[str, Any]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str, what: str) -> bytes:
    """Strict base64url without padding; ``SignatureInvalid`` otherwise."""
    if "=" in text or not text.isascii():
        raise SignatureInvalid(f"JWS {what} is not base64url without padding")
    try:
        decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as e:
        raise SignatureInvalid(f"JWS {what} is not base64url: {e}") from e
    if b64url(decoded) != text:
        raise SignatureInvalid(f"JWS {what} is not in canonical base64url")
    return decoded


def sign_compact(payload: bytes, *, typ: str, signer: Signer) -> str:
    """``header.payload.signature`` with header ``{"alg": "ES256", "kid", "typ"}``."""
    header = json.dumps({"alg": ALGORITHM, "kid": signer.kid, "typ": typ}, separators=(",", ":"))
    signing_input = f"{b64url(header.encode())}.{b64url(payload)}"
    signature = signer.sign(signing_input.encode("ascii"))
    if len(signature) != 64:
        raise ValueError("an ES256 signature is 64 bytes (r ‖ s)")
    return f"{signing_input}.{b64url(signature)}"


def peek_header(token: str) -> Mapping[str, Any]:
    """The protected header of ``token``, unverified (to name its ``kid`` in messages)."""
    parts = _parts(token)
    return _header(parts[0])


def verify_compact(
    token: str, *, typ: str, keys: Mapping[str, ec.EllipticCurvePublicKey]
) -> VerifiedJws:
    """Verify ``token`` (see the module docstring) with the key ``keys[kid]``."""
    encoded_header, encoded_payload, encoded_signature = _parts(token)
    header = _header(encoded_header)
    if header.get("alg") != ALGORITHM:
        raise SignatureInvalid(f"JWS alg is {header.get('alg')!r}; only {ALGORITHM} is accepted")
    if header.get("typ") != typ:
        raise SignatureInvalid(f"JWS typ is {header.get('typ')!r}, not {typ!r}")
    embedded = [name for name in EMBEDDED_KEY_MEMBERS if name in header]
    if embedded:
        raise SignatureInvalid(
            f"JWS names its own key ({', '.join(embedded)}); only a key the verifier was "
            "given is trusted"
        )
    if "crit" in header:
        raise SignatureInvalid("JWS has critical header members this verifier does not know")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise SignatureInvalid("JWS header names no key (kid)")
    key = keys.get(kid)
    if key is None:
        raise SignatureInvalid(f"JWS is signed by key {kid!r}, which is not one of the given keys")
    signature = unb64url(encoded_signature, "signature")
    if len(signature) != 64:
        raise SignatureInvalid(f"ES256 signature is {len(signature)} bytes, not 64")
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    signing_input = f"{encoded_header}.{encoded_payload}".encode("ascii")
    try:
        key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as e:
        raise SignatureInvalid(f"JWS signature does not verify with key {kid!r}") from e
    return VerifiedJws(payload=unb64url(encoded_payload, "payload"), kid=kid, header=header)


def _parts(token: str) -> tuple[str, str, str]:
    if len(token) > MAX_JWS_BYTES:
        raise SignatureInvalid(f"JWS of {len(token)} bytes is larger than {MAX_JWS_BYTES}")
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise SignatureInvalid(f"a compact JWS has 3 parts, this one {len(parts)}")
    return parts[0], parts[1], parts[2]


def _header(encoded: str) -> Mapping[str, Any]:
    try:
        header = json.loads(unb64url(encoded, "header"))
    except ValueError as e:
        raise SignatureInvalid(f"JWS header is not JSON: {e}") from e
    if not isinstance(header, dict):
        raise SignatureInvalid("JWS header is not a JSON object")
    return header
