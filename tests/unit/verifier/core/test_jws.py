"""Compact ES256 JWS: what verifies, what an attacker's variants are refused for (one per
test), and an independent JOSE library (PyJWT) agreeing on our signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from geoattest.errors import SignatureInvalid
from tests.support.software_pki import JwsKey
from verifier.core.jwk import parse_public_keys, public_jwk
from verifier.core.jws import b64url, sign_compact, verify_compact

TYP = "geoattest-test+jws"


def _forge(header: Mapping[str, object], payload: bytes, key: JwsKey) -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(payload)}"
    return f"{signing_input}.{b64url(key.sign(signing_input.encode()))}"


def test_a_signed_payload_verifies_and_comes_back_unchanged() -> None:
    key = JwsKey()
    token = sign_compact(b"payload\n", typ=TYP, signer=key)
    verified = verify_compact(token, typ=TYP, keys=key.keys)
    assert verified.payload == b"payload\n"
    assert verified.kid == key.kid


def test_pyjwt_verifies_our_jws_with_the_published_key() -> None:
    key = JwsKey()
    token = sign_compact(b"checkpoint body", typ=TYP, signer=key)
    pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert jwt.api_jws.decode(token, pem, algorithms=["ES256"]) == b"checkpoint body"
    assert jwt.get_unverified_header(token)["kid"] == key.kid


def test_a_changed_payload_is_refused() -> None:
    key = JwsKey()
    header, _, signature = sign_compact(b"size 5", typ=TYP, signer=key).split(".")
    with pytest.raises(SignatureInvalid, match="does not verify"):
        verify_compact(f"{header}.{b64url(b'size 6')}.{signature}", typ=TYP, keys=key.keys)


def test_a_signature_by_another_key_is_refused_whatever_kid_it_names() -> None:
    key, other = JwsKey(), JwsKey()
    token = sign_compact(b"x", typ=TYP, signer=other)
    with pytest.raises(SignatureInvalid, match="not one of the given keys"):
        verify_compact(token, typ=TYP, keys=key.keys)
    relabelled = _forge({"alg": "ES256", "kid": key.kid, "typ": TYP}, b"x", other)
    with pytest.raises(SignatureInvalid, match="does not verify"):
        verify_compact(relabelled, typ=TYP, keys=key.keys)


def test_alg_none_is_refused() -> None:
    key = JwsKey()
    header = b64url(json.dumps({"alg": "none", "kid": key.kid, "typ": TYP}).encode())
    with pytest.raises(SignatureInvalid, match="only ES256"):
        verify_compact(f"{header}.{b64url(b'x')}.", typ=TYP, keys=key.keys)


def test_hs256_with_the_public_key_as_secret_is_refused() -> None:
    key = JwsKey()
    secret = json.dumps(public_jwk(key.private.public_key())).encode()
    header = b64url(json.dumps({"alg": "HS256", "kid": key.kid, "typ": TYP}).encode())
    signing_input = f"{header}.{b64url(b'x')}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(SignatureInvalid, match="only ES256"):
        verify_compact(f"{signing_input}.{b64url(mac)}", typ=TYP, keys=key.keys)


def test_another_typ_is_refused() -> None:
    key = JwsKey()
    token = sign_compact(b"x", typ="geoattest-manifest+jws", signer=key)
    with pytest.raises(SignatureInvalid, match="typ"):
        verify_compact(token, typ=TYP, keys=key.keys)


@pytest.mark.parametrize("member", ["jwk", "jku", "x5c", "x5u"])
def test_a_jws_that_names_its_own_key_is_refused(member: str) -> None:
    attacker = JwsKey()
    header = {"alg": "ES256", "kid": attacker.kid, "typ": TYP, member: "attacker's key"}
    # Even when the caller (wrongly) holds the attacker's key too.
    with pytest.raises(SignatureInvalid, match="names its own key"):
        verify_compact(_forge(header, b"x", attacker), typ=TYP, keys=attacker.keys)


def test_critical_members_are_refused() -> None:
    key = JwsKey()
    header = {"alg": "ES256", "kid": key.kid, "typ": TYP, "crit": ["exp"], "exp": 1}
    with pytest.raises(SignatureInvalid, match="critical"):
        verify_compact(_forge(header, b"x", key), typ=TYP, keys=key.keys)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t + ".extra",
        lambda t: t.rsplit(".", 1)[0],
        lambda t: t.replace(".", "=.", 1),
        lambda t: t[: t.rindex(".") + 1] + b64url(b"short"),
    ],
)
def test_malformed_compact_forms_are_refused(mangle: object) -> None:
    key = JwsKey()
    token = sign_compact(b"x", typ=TYP, signer=key)
    assert callable(mangle)
    with pytest.raises(SignatureInvalid):
        verify_compact(mangle(token), typ=TYP, keys=key.keys)


def test_key_files_give_keys_by_their_own_thumbprint() -> None:
    key = JwsKey()
    public = key.private.public_key()
    jwk = {**public_jwk(public), "kid": "whatever the file says"}
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for data in (json.dumps({"keys": [jwk]}).encode(), json.dumps(jwk).encode(), pem):
        assert list(parse_public_keys(data)) == [key.kid]


def test_key_files_that_are_no_public_p256_key_are_refused() -> None:
    key = JwsKey()
    private_jwk = {**public_jwk(key.private.public_key()), "d": b64url(b"\x01" * 32)}
    rsa_like = {"kty": "RSA", "n": "AQAB", "e": "AQAB"}
    bad_point = {**public_jwk(key.private.public_key()), "y": base64.urlsafe_b64encode(b"\0" * 32)}
    bodies: list[object] = [private_jwk, rsa_like, bad_point, {"keys": []}, ["not", "an"]]
    for body in bodies:
        with pytest.raises(SignatureInvalid):
            parse_public_keys(json.dumps(body, default=str).encode())
    with pytest.raises(SignatureInvalid):
        parse_public_keys(b"neither PEM nor JSON")
