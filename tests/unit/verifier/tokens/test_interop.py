"""Our tokens verify from the published JWKS alone with two independent JOSE libraries, PyJWT and
joserfc, signed by the real keyring (before and after a rotation). What a permissive caller of a
library might let through (``alg: none``, HS256 keyed with the public key, a ``typ`` swap) is
refused by ours (``test_verify.py`` has one test per attack)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import jwt
import pytest
from joserfc import jwt as joserfc_jwt
from joserfc.jwk import KeySet

from geoattest.jose import compact_json, encode_jws
from tests.unit.verifier.tokens.issuing import AUDIENCE, ISSUER, Passed, claims_for, passed_round
from verifier.signing.keyring import KeyPurpose, Keyring
from verifier.tokens.claims import TokenClaims, token_header
from verifier.tokens.verify import Expected, Rejected, TrustedKeys, VerifiedToken, verify_token

NOW = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def pog() -> Passed:
    return passed_round(geo=True)


def _keyring(tmp_path: Path) -> Keyring:
    ring = Keyring(tmp_path / "keys", KeyPurpose.TOKENS, retired_lifetime=dt.timedelta(hours=1))
    ring.ensure(NOW)
    return ring


def _signed(ring: Keyring, claims: TokenClaims) -> str:
    key = ring.active()
    return encode_jws(token_header(claims.type, key.kid), compact_json(claims.body), key.sign)


def _jwks_json(ring: Keyring) -> str:
    return json.dumps(ring.jwks(NOW))  # what GET /.well-known/jwks.json serves


def test_pyjwt_verifies_our_token_from_the_jwks_alone(tmp_path: Path, pog: Passed) -> None:
    ring = _keyring(tmp_path)
    claims = claims_for(pog)
    token = _signed(ring, claims)
    jwks = jwt.PyJWKSet.from_json(_jwks_json(ring))
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)
    decoded = jwt.decode(
        token,
        key.key,
        algorithms=["ES256"],
        audience=AUDIENCE,
        issuer=ISSUER,
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    assert decoded == claims.body
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "typ": "pog+jwt", "kid": kid}


def test_joserfc_verifies_our_token_from_the_jwks_alone(tmp_path: Path, pog: Passed) -> None:
    ring = _keyring(tmp_path)
    claims = claims_for(pog)
    token = _signed(ring, claims)
    keys = KeySet.import_key_set(json.loads(_jwks_json(ring)))
    decoded = joserfc_jwt.decode(token, keys, algorithms=["ES256"])
    assert decoded.claims == claims.body
    assert decoded.header["typ"] == "pog+jwt"
    registry = joserfc_jwt.JWTClaimsRegistry(
        now=int(claims.issued_at.timestamp()) + 1,
        aud={"essential": True, "value": AUDIENCE},
        iss={"essential": True, "value": ISSUER},
    )
    registry.validate(decoded.claims)


def test_tokens_signed_before_a_rotation_keep_verifying_until_they_expire(
    tmp_path: Path, pog: Passed
) -> None:
    ring = _keyring(tmp_path)
    claims = claims_for(pog)
    before = _signed(ring, claims)
    ring.rotate(NOW)
    after = _signed(ring, claims)
    assert before.split(".")[0] != after.split(".")[0]  # another kid
    keys = TrustedKeys.from_jwks(ring.jwks(NOW).copy())
    expected = Expected(audience=AUDIENCE, issuer=ISSUER)
    now = claims.issued_at + dt.timedelta(seconds=1)
    for token in (before, after):
        assert isinstance(verify_token(token, keys, expected, now), VerifiedToken)
        assert joserfc_jwt.decode(
            token, KeySet.import_key_set(json.loads(_jwks_json(ring))), algorithms=["ES256"]
        )
    # Past the retired key's publication (rotation + longest token lifetime) it is gone.
    later = TrustedKeys.from_jwks(ring.jwks(NOW + dt.timedelta(hours=2)))
    gone = verify_token(before, later, expected, now)
    assert isinstance(gone, Rejected)
    assert gone.reason == "unknown_kid"


def test_pyjwt_refuses_alg_none_when_asked_for_es256_and_so_do_we(
    tmp_path: Path, pog: Passed
) -> None:
    ring = _keyring(tmp_path)
    claims = claims_for(pog)
    unsigned = jwt.encode(claims.body, key="", algorithm="none", headers={"typ": "pog+jwt"})
    with pytest.raises(jwt.InvalidAlgorithmError):
        jwt.decode(unsigned, ring.active().public, algorithms=["ES256"], audience=AUDIENCE)
    keys = TrustedKeys.from_jwks(ring.jwks(NOW))
    verdict = verify_token(unsigned, keys, Expected(audience=AUDIENCE), claims.issued_at)
    assert isinstance(verdict, Rejected)
    assert verdict.reason == "wrong_alg"
