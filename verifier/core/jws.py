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

Built on ``geoattest.jose`` (base64url, JSON, ES256), with the rules above on top. Raises
``SignatureInvalid`` naming what failed. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric import ec

from geoattest.errors import JoseMalformed, SignatureInvalid
from geoattest.jose import b64url, b64url_decode, encode_jws, es256_valid, json_object

__all__ = ["Signer", "VerifiedJws", "b64url", "peek_header", "sign_compact", "unb64url",
           "verify_compact"]  # fmt: skip

ALGORITHM = "ES256"
EMBEDDED_KEY_MEMBERS = ("jwk", "jku", "x5c", "x5u")
MAX_JWS_BYTES = 1 << 20  # manifests of large bundles: more than a token's 64 KiB


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


def unb64url(text: str, what: str) -> bytes:
    """Strict base64url without padding (``geoattest.jose``); ``SignatureInvalid`` otherwise."""
    try:
        return b64url_decode(text, f"JWS {what}")
    except JoseMalformed as e:
        raise SignatureInvalid(e.message) from e


def sign_compact(payload: bytes, *, typ: str, signer: Signer) -> str:
    """``header.payload.signature`` with header ``{"alg": "ES256", "kid", "typ"}``."""

    def sign(data: bytes) -> bytes:
        signature = signer.sign(data)
        if len(signature) != 64:
            raise ValueError("an ES256 signature is 64 bytes (r ‖ s)")
        return signature

    return encode_jws({"alg": ALGORITHM, "kid": signer.kid, "typ": typ}, payload, sign)


def peek_header(token: str) -> Mapping[str, Any]:
    """The protected header of ``token``, unverified (to name its ``kid`` in messages)."""
    return _header(_parts(token)[0])


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
    signing_input = f"{encoded_header}.{encoded_payload}".encode("ascii")
    if not es256_valid(key, signing_input, signature):
        raise SignatureInvalid(f"JWS signature does not verify with key {kid!r}")
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
        return json_object(unb64url(encoded, "header"), "JWS header")
    except JoseMalformed as e:
        raise SignatureInvalid(e.message) from e
