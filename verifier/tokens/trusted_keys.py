"""The relying party's trust in token keys: the verifier's published JWKS, by ``kid``. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from geoattest.errors import JoseMalformed
from geoattest.jose import ES256, json_object, jwk_public_key


@dataclass(frozen=True, slots=True)
class TrustedKeys:
    """The verifier's published token keys, by ``kid`` (from its JWKS)."""

    keys: Mapping[str, ec.EllipticCurvePublicKey]

    @classmethod
    def from_jwks(cls, jwks: bytes | Mapping[str, object]) -> TrustedKeys:
        """Every ES256 P-256 signing key of a JWKS (``{"keys": [...]}``), by ``kid``.

        ``JoseMalformed`` for a document that is not a JWKS, a key without ``kid``, or a
        ``kid`` given twice. Keys meant for another algorithm or use are left out."""
        body = json_object(jwks, "JWKS") if isinstance(jwks, bytes) else jwks
        items = body.get("keys")
        if not isinstance(items, list):
            raise JoseMalformed("a JWKS is an object with a 'keys' list")
        keys: dict[str, ec.EllipticCurvePublicKey] = {}
        for item in items:
            if not isinstance(item, dict):
                raise JoseMalformed("a JWKS key is a JSON object")
            if item.get("alg", ES256) != ES256 or item.get("use", "sig") != "sig":
                continue
            if item.get("kty") != "EC" or item.get("crv") != "P-256":
                continue
            kid = item.get("kid")
            if not isinstance(kid, str) or not kid:
                raise JoseMalformed("a JWKS key has no kid")
            if kid in keys:
                raise JoseMalformed(f"kid {kid[:60]!r} appears twice in the JWKS")
            keys[kid] = jwk_public_key(item)
        return cls(keys=keys)
