"""Deciding a key release: a PoG token for the key's zones, proof of the token's ``cnf`` key, and
the model key wrapped to the caller's wrapping key.

The request (``POST /v1/keys/<id>/release``) carries two compact JWS:

- ``Authorization: PoG <token>``: the verifier's token. It must verify with the verifier's
  JWKS, not be revoked in its status document, be PoG for one of the key's zones, name one of
  the key's workload hashes (when the key names any), reach the key's tier (``affirming`` by
  default) in every submodule, be addressed to this service, and be bound (``cnf.jkt``) to the
  key that signs the proof below;
- ``Geoattest-PoP: <proof>`` (DPoP-style, RFC 9449's shape): header ``{"alg": "ES256", "typ":
  "geoattest-key-pop+jwt", "jwk": <the cnf key>}``, payload ``{"htm": "POST", "htu": <the
  request's path>, "iat", "jti", "ath": base64url(SHA-256(token)), "wrap": <a P-256 ECDH public
  JWK>}``: within a minute of now, ``jti`` used once, for this request and this token.

The key is returned as a compact JWE (ECDH-ES+A256KW, A256GCM) to ``wrap``, whose plaintext is
an ``oct`` JWK of the model key: only the holder of the wrapping key's private half can read it.
The wrapping key is another key than the ``cnf`` signing key (one key, one purpose).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import ec

from geoattest.errors import GeoattestError, KeyReleaseRefused
from geoattest.jose import (
    ES256,
    b64url,
    compact_json,
    encode_jws,
    encrypt_ecdh_es,
    es256_sign,
    es256_valid,
    jwk_public_key,
    parse_jws,
    public_jwk,
    thumbprint,
)
from keyrelease.keystore import ModelKey
from verifier.tokens.verify import Expected, Rejected, TrustedKeys, VerifiedToken, verify_token
from verifier.tokens.vocabulary import EarStatus, TokenType

__all__ = ["POP_TYP", "Release", "Releaser", "Trust", "make_proof", "release_path"]

POP_TYP = "geoattest-key-pop+jwt"
KEY_JWE_TYP = "geoattest-model-key+jwe"
POP_WINDOW = 60.0


def release_path(key_id: str) -> str:
    return f"/v1/keys/{key_id}/release"


def make_proof(
    cnf_key: ec.EllipticCurvePrivateKey,
    *,
    token: str,
    key_id: str,
    wrap: ec.EllipticCurvePublicKey,
    now: float,
    jti: str | None = None,
) -> str:
    """The caller's proof for a release request (the module docstring's ``Geoattest-PoP``)."""
    claims = {
        "htm": "POST",
        "htu": release_path(key_id),
        "iat": int(now),
        "jti": jti or secrets.token_urlsafe(16),
        "ath": _ath(token),
        "wrap": public_jwk(wrap),
    }
    header = {"alg": ES256, "typ": POP_TYP, "jwk": public_jwk(cnf_key.public_key())}
    return encode_jws(header, compact_json(claims), lambda data: es256_sign(cnf_key, data))


def _ath(token: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True, kw_only=True)
class Release:
    wrapped: str  # compact JWE of the model key
    token: VerifiedToken


class Trust(Protocol):
    """The verifier's keys and revocation status (``geoattest.token_sources.VerifierTrust``)."""

    def keys_for(self, token: str) -> TrustedKeys: ...

    def revoked(self) -> frozenset[str]: ...


class _ReplayCache:
    """PoP ``jti``s seen in the last two windows (one process; see docs/tokens.md)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._seen: dict[str, float] = {}
        self._clock = clock
        self._lock = threading.Lock()

    def first_use(self, jti: str) -> bool:
        now = self._clock()
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen = {k: t for k, t in self._seen.items() if now - t < 2 * POP_WINDOW}
            if jti in self._seen and now - self._seen[jti] < 2 * POP_WINDOW:
                return False
            self._seen[jti] = now
            return True


class Releaser:
    def __init__(
        self, *, audience: str, trust: Trust, clock: Callable[[], float] = time.time
    ) -> None:
        self._audience = audience
        self._trust = trust
        self._clock = clock
        self._replays = _ReplayCache(clock)

    def release(self, key: ModelKey, token: str, proof: str) -> Release:
        """The wrapped key, or ``KeyReleaseRefused`` whose ``reason`` names the failed check."""
        now = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
        jkt, wrap = self._check_proof(key, token, proof)
        try:
            keys = self._trust.keys_for(token)
            revoked = self._trust.revoked()
        except GeoattestError as e:  # no status, no release
            raise KeyReleaseRefused(
                f"the verifier's keys or status are unavailable: {e.message}",
                reason="verifier_unavailable",
            ) from e
        expected = Expected(
            audience=self._audience,
            require=TokenType.POG,
            zones=key.zones,
            workloads=key.workloads,
            cnf_jkt=jkt,
            revoked=revoked,
            min_tier=EarStatus(key.min_tier),
        )
        verdict = verify_token(token, keys, expected, now)
        if isinstance(verdict, Rejected):
            raise KeyReleaseRefused(
                f"token_{verdict.reason.value}: {verdict.message}",
                reason=f"token_{verdict.reason.value}",
            )
        plaintext = compact_json(
            {"kty": "oct", "kid": key.key_id, "alg": "A256GCM", "k": b64url(key.key)}
        )
        wrapped = encrypt_ecdh_es(plaintext, wrap, kid=key.key_id, typ=KEY_JWE_TYP)
        return Release(wrapped=wrapped, token=verdict)

    def _check_proof(
        self, key: ModelKey, token: str, proof: str
    ) -> tuple[str, ec.EllipticCurvePublicKey]:
        def refuse(message: str) -> KeyReleaseRefused:
            return KeyReleaseRefused(f"pop_invalid: {message}", reason="pop_invalid")

        try:
            jws = parse_jws(proof)
        except GeoattestError as e:
            raise refuse(e.message) from e
        header = jws.header
        if header.alg != ES256 or header.typ != POP_TYP or header.jwk is None:
            raise refuse(f"the proof is an ES256 JWS of typ {POP_TYP} carrying its jwk")
        if not es256_valid(header.jwk, jws.signing_input, jws.signature):
            raise refuse("the proof is not signed by its jwk")
        try:
            claims = json.loads(jws.payload)
            htm, htu, iat, jti, ath = (
                claims["htm"], claims["htu"], int(claims["iat"]), str(claims["jti"]), claims["ath"]
            )  # fmt: skip
            wrap = jwk_public_key(claims["wrap"])
        except (ValueError, KeyError, TypeError, GeoattestError) as e:
            raise refuse(f"the proof's claims do not parse: {e}") from e
        if htm != "POST" or htu != release_path(key.key_id):
            raise refuse(f"the proof is for {htm} {str(htu)[:80]}, not this request")
        if abs(self._clock() - iat) > POP_WINDOW:
            raise refuse("the proof is not from the last minute")
        if not isinstance(ath, str) or not hmac.compare_digest(ath, _ath(token)):
            raise refuse("the proof is for another token (ath)")
        jkt = thumbprint(header.jwk)
        if thumbprint(wrap) == jkt or public_jwk(wrap) == public_jwk(header.jwk):
            raise refuse("the wrapping key must be another key than the proof's")
        if not self._replays.first_use(jti):
            raise KeyReleaseRefused(
                "pop_replayed: this proof was used before", reason="pop_replayed"
            )
        return jkt, wrap
