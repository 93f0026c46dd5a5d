"""geoattest.jose: strict base64url, ES256 JWS, P-256 JWKs, and JWE ECDH-ES+A256KW (with the
RFC 7518 Concat KDF known answer and joserfc both ways)."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwe
from joserfc.jwk import ECKey

from geoattest.errors import JoseMalformed
from geoattest.jose import (
    b64url,
    b64url_decode,
    concat_kdf,
    decrypt_ecdh_es,
    encode_jws,
    encrypt_ecdh_es,
    es256_sign,
    es256_valid,
    jwk_public_key,
    parse_jws,
    public_jwk,
    thumbprint,
)


def _private(d: str, x: str, y: str) -> ec.EllipticCurvePrivateKey:
    public = ec.EllipticCurvePublicNumbers(
        int.from_bytes(b64url_decode(x), "big"), int.from_bytes(b64url_decode(y), "big"),
        ec.SECP256R1(),
    )  # fmt: skip
    return ec.EllipticCurvePrivateNumbers(
        int.from_bytes(b64url_decode(d), "big"), public
    ).private_key()


def test_concat_kdf_known_answer_of_rfc7518_appendix_c() -> None:
    alice = _private(
        "0_NxaRPUMQoAJt50Gz8YiTr8gRTwyEaCumd-MToTmIo",
        "gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0",
        "SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps",
    )
    bob = _private(
        "VEmDZpDXXK8p8N0Cndsxs924q6nS1RXFASRl6BfUqdw",
        "weNJy2HscCSM6AEDTDg04biOvhFhyyWvOHQfeF_PxMQ",
        "e8lnCO-AlStT-NJVX-crhB7QRYhiix03illJOVAOyck",
    )
    shared = bob.exchange(ec.ECDH(), alice.public_key())
    key = concat_kdf(shared, alg="A128GCM", key_bits=128, apu=b"Alice", apv=b"Bob")
    assert b64url(key) == "VqqN6vgjbSBcIijNcacQGg"


@pytest.mark.parametrize("text", ["YQ==", "YQ=", "Y", "a+b/", "YR", "Y Q", "é"])
def test_base64url_is_strict(text: str) -> None:
    with pytest.raises(JoseMalformed):
        b64url_decode(text)


def test_base64url_round_trips() -> None:
    for data in (b"", b"a", b"ab", b"abc", bytes(range(256))):
        assert b64url_decode(b64url(data)) == data


def test_es256_jws_round_trip_and_tamper() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    token = encode_jws({"alg": "ES256", "typ": "x+jwt"}, b'{"a":1}', lambda d: es256_sign(key, d))
    jws = parse_jws(token)
    assert jws.header.alg == "ES256"
    assert jws.header.typ == "x+jwt"
    assert jws.header.members == {"alg", "typ"}
    assert es256_valid(key.public_key(), jws.signing_input, jws.signature)
    assert not es256_valid(key.public_key(), jws.signing_input + b"x", jws.signature)
    assert not es256_valid(key.public_key(), jws.signing_input, jws.signature[:63])
    assert not es256_valid(key.public_key(), jws.signing_input, bytes(64))


def test_duplicate_header_members_are_refused() -> None:
    head = b64url(b'{"alg":"ES256","alg":"none"}')
    with pytest.raises(JoseMalformed, match="duplicate"):
        parse_jws(f"{head}.{b64url(b'{}')}.")


def test_a_jwk_off_the_curve_or_with_a_private_part_is_refused() -> None:
    members = public_jwk(ec.generate_private_key(ec.SECP256R1()).public_key())
    jwk_public_key(members)
    off = dict(
        members,
        y=b64url((int.from_bytes(b64url_decode(members["y"]), "big") ^ 1).to_bytes(32, "big")),
    )
    with pytest.raises(JoseMalformed, match="curve"):
        jwk_public_key(off)
    with pytest.raises(JoseMalformed, match="private"):
        jwk_public_key(dict(members, d="AAAA"))
    with pytest.raises(JoseMalformed):
        jwk_public_key(dict(members, crv="P-384"))


def test_thumbprint_matches_joserfc() -> None:
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    assert thumbprint(public) == ECKey.import_key(public).thumbprint()


def test_our_jwe_decrypts_with_joserfc_and_theirs_with_ours() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    token = encrypt_ecdh_es(b"model key", private.public_key(), kid="k1")
    key = ECKey.import_key(private)
    assert jwe.decrypt_compact(token, key).plaintext == b"model key"
    theirs = jwe.encrypt_compact(
        {"alg": "ECDH-ES+A256KW", "enc": "A256GCM"},
        b"their key",
        ECKey.import_key(private.public_key()),
    )
    assert decrypt_ecdh_es(theirs, private) == b"their key"


def test_a_jwe_for_another_key_or_tampered_does_not_decrypt() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    token = encrypt_ecdh_es(b"secret", private.public_key())
    with pytest.raises(JoseMalformed, match="decrypt"):
        decrypt_ecdh_es(token, ec.generate_private_key(ec.SECP256R1()))
    parts = token.split(".")
    parts[3] = b64url(bytes(len(b64url_decode(parts[3]))))
    with pytest.raises(JoseMalformed, match="decrypt"):
        decrypt_ecdh_es(".".join(parts), private)


def test_a_jwe_with_other_algorithms_or_compression_is_refused() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    parts = encrypt_ecdh_es(b"secret", private.public_key()).split(".")
    header = json.loads(b64url_decode(parts[0]))
    for change in ({"enc": "A128GCM"}, {"zip": "DEF"}, {"alg": "ECDH-ES"}):
        forged = b64url(json.dumps(header | change).encode())
        with pytest.raises(JoseMalformed):
            decrypt_ecdh_es(".".join([forged, *parts[1:]]), private)


@pytest.mark.parametrize(
    "header",
    [{"alg": "ECDH-ES+A128KW", "enc": "A128GCM"}, {"alg": "ECDH-ES+A256KW", "enc": "A128GCM"}],
)
def test_a_genuine_jwe_of_other_algorithms_is_refused(header: dict[str, str]) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    theirs = jwe.encrypt_compact(header, b"their key", ECKey.import_key(private.public_key()))
    with pytest.raises(JoseMalformed, match="must use"):
        decrypt_ecdh_es(theirs, private)
