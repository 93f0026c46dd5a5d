"""Reading the key files an auditor is given: a JWKS (the verifier publishes its log keys as
one), a single JWK, or a PEM public key (JWKs and thumbprints themselves are
``geoattest.jose``). The ``kid`` of a key is always its thumbprint, recomputed here, never the
``kid`` a file claims. Pure: bytes in, keys out; ``SignatureInvalid`` for anything else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from geoattest.errors import JoseMalformed, SignatureInvalid
from geoattest.jose import jwk_public_key, public_jwk, thumbprint

__all__ = ["key_from_jwk", "parse_public_keys", "public_jwk", "thumbprint"]


def key_from_jwk(jwk: Mapping[str, object]) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from its JWK; ``SignatureInvalid`` for any other key or a bad point."""
    try:
        return jwk_public_key(jwk)
    except JoseMalformed as e:
        raise SignatureInvalid(f"key file: {e.message}") from e


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
