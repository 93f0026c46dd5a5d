"""P-256 public keys as JWKs (RFC 7517), their RFC 7638 thumbprints, and reading the key files
an auditor is given: a JWKS (the verifier publishes its log keys as one), a single JWK, or a
PEM public key. The ``kid`` of a key is always its thumbprint, recomputed here, never the
``kid`` a file claims. Pure: bytes in, keys out; ``SignatureInvalid`` for anything else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from geoattest.errors import SignatureInvalid


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_jwk(public: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The RFC 7517 members of a P-256 public key (no kid)."""
    numbers = public.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64url(numbers.x.to_bytes(32, "big")),
        "y": _b64url(numbers.y.to_bytes(32, "big")),
    }


def thumbprint(public: ec.EllipticCurvePublicKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url): the required members in lexical order."""
    members = public_jwk(public)
    canonical = json.dumps(
        {key: members[key] for key in ("crv", "kty", "x", "y")}, separators=(",", ":")
    )
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def key_from_jwk(jwk: Mapping[str, object]) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from its JWK; ``SignatureInvalid`` for any other key or a bad point."""
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise SignatureInvalid(f"key is {jwk.get('kty')}/{jwk.get('crv')}, not an EC P-256 key")
    if "d" in jwk:
        raise SignatureInvalid("the key file holds a private key; give the public key only")
    try:
        x, y = (_coordinate(jwk.get(name)) for name in ("x", "y"))
        return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    except ValueError as e:
        raise SignatureInvalid(f"JWK is not a P-256 point: {e}") from e


def parse_public_keys(data: bytes) -> dict[str, ec.EllipticCurvePublicKey]:
    """Keys by thumbprint from a JWKS (``{"keys": [...]}``), one JWK, or a PEM public key."""
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text)
        except ValueError as e:
            raise SignatureInvalid(f"PEM is not a public key: {e}") from e
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise SignatureInvalid("PEM public key is not an EC P-256 key")
        return {thumbprint(key): key}
    try:
        body = json.loads(text)
    except ValueError as e:
        raise SignatureInvalid(f"key file is neither PEM nor JSON: {e}") from e
    if not isinstance(body, dict):
        raise SignatureInvalid("key file is not a JWK or a JWKS object")
    members = body.get("keys", [body])
    if not isinstance(members, list) or not members:
        raise SignatureInvalid("JWKS holds no keys")
    keys = {}
    for member in members:
        if not isinstance(member, dict):
            raise SignatureInvalid("JWKS member is not an object")
        key = key_from_jwk(member)
        keys[thumbprint(key)] = key
    return keys


def _coordinate(value: object) -> int:
    if not isinstance(value, str):
        raise ValueError("coordinate missing")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"coordinate is not base64url: {e}") from e
    if len(raw) != 32:
        raise ValueError(f"coordinate of {len(raw)} bytes, not 32")
    return int.from_bytes(raw, "big")
