"""TPMT_PUBLIC parsing, names, key loading, encoding and the EK template (real vectors)."""

from __future__ import annotations

import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from geoattest.errors import TpmFormatError
from tests.paths import vector
from tests.unit.tpm.vectors import load_pem_key
from tpm import (
    Alg,
    EccCurve,
    ObjectAttributes,
    SymmetricDef,
    ak_public,
    build_public,
    ek_public,
    encode_tpm2b_public,
    parse_tpm2b_public,
    parse_tpmt_public,
    public_key_matches,
)

TOOLS = "keylime/tpm2_tools_emulator"
LEAF = "keylime/ek_ca/leaf"


def test_tools_ak_name_matches_tpm2_tools() -> None:
    raw = vector(f"{TOOLS}/ak.pub").read_bytes()
    ak = parse_tpm2b_public(raw)
    expected = vector(f"{TOOLS}/ak.name").read_bytes()
    assert ak.name == expected
    assert ak.name == b"\x00\x0b" + hashlib.sha256(raw[2:]).digest()
    assert ak.raw == raw[2:]
    assert encode_tpm2b_public(ak) == raw


def test_tools_ak_fields() -> None:
    ak = parse_tpm2b_public(vector(f"{TOOLS}/ak.pub").read_bytes())
    assert ak.type is Alg.RSA
    assert ak.name_alg is Alg.SHA256
    assert ak.scheme is Alg.RSASSA
    assert ak.scheme_hash is Alg.SHA256
    assert ak.rsa_key_bits == 2048
    assert ak.rsa_exponent == 65537
    assert ak.symmetric is None
    assert ak.attributes == (
        ObjectAttributes.FIXED_TPM
        | ObjectAttributes.FIXED_PARENT
        | ObjectAttributes.SENSITIVE_DATA_ORIGIN
        | ObjectAttributes.USER_WITH_AUTH
        | ObjectAttributes.RESTRICTED
        | ObjectAttributes.SIGN_ENCRYPT
    )
    assert public_key_matches(ak, load_pem_key(vector(f"{TOOLS}/akpub.pem")))
    assert not public_key_matches(ak, load_pem_key(vector(f"{TOOLS}/ekpub.pem")))


def test_tools_ek_matches_pem_and_template() -> None:
    ek = parse_tpm2b_public(vector(f"{TOOLS}/ek.pub").read_bytes())
    pem = load_pem_key(vector(f"{TOOLS}/ekpub.pem"))
    assert public_key_matches(ek, pem)
    assert ek.symmetric == SymmetricDef(alg=Alg.AES, key_bits=128, mode=Alg.CFB)
    assert ek_public(pem) == ek


@pytest.mark.parametrize("kind", ["rsa", "ecc"])
def test_infineon_ek_cert_key_matches_expected_public_area(kind: str) -> None:
    cert = x509.load_der_x509_certificate(
        vector(f"{LEAF}/infineon_optiga_{kind}_ek_leaf_CA035.der").read_bytes()
    )
    expected = vector(f"{LEAF}/infineon_optiga_{kind}_ek_leaf_CA035.expected_tpm2b_public.bin")
    pub = parse_tpm2b_public(expected.read_bytes())
    key = cert.public_key()
    assert public_key_matches(pub, key)
    assert isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    assert encode_tpm2b_public(ek_public(key)) == expected.read_bytes()
    if kind == "ecc":
        assert pub.ecc_curve is EccCurve.NIST_P256
        assert pub.ecc_kdf is Alg.NULL


def test_public_key_mismatch_is_false() -> None:
    ecc_pub = parse_tpm2b_public(
        vector(f"{LEAF}/infineon_optiga_ecc_ek_leaf_CA035.expected_tpm2b_public.bin").read_bytes()
    )
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    assert not public_key_matches(ecc_pub, other)
    assert not public_key_matches(ecc_pub, ec.generate_private_key(ec.SECP384R1()).public_key())
    assert not public_key_matches(ecc_pub, "not a key")


@pytest.mark.parametrize(
    "key",
    [
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        ec.generate_private_key(ec.SECP384R1()).public_key(),
        rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key(),
        rsa.generate_private_key(public_exponent=3, key_size=1024).public_key(),  # noqa: S505 - odd exponent and size on purpose
    ],
)
def test_build_public_round_trip(key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> None:
    pub = ak_public(key)
    assert public_key_matches(pub, key)
    again = parse_tpmt_public(pub.raw)
    assert again == pub
    assert again.name[:2] == b"\x00\x0b"
    assert len(again.name) == 34


def test_truncated_and_trailing_bytes_rejected() -> None:
    raw = vector(f"{TOOLS}/ak.pub").read_bytes()
    with pytest.raises(TpmFormatError, match="truncated"):
        parse_tpm2b_public(raw[:-1])
    with pytest.raises(TpmFormatError, match="trailing"):
        parse_tpm2b_public(raw + b"\x00")
    with pytest.raises(TpmFormatError, match="trailing"):
        parse_tpmt_public(raw[2:] + b"\x00")


def test_rsa_modulus_length_must_match_key_bits() -> None:
    raw = bytearray(vector(f"{TOOLS}/ak.pub").read_bytes()[2:])
    # keyBits follows type(2) nameAlg(2) attrs(4) authPolicy(2) sym(2) scheme(4): offset 16.
    assert raw[16:18] == b"\x08\x00"
    raw[16:18] = b"\x04\x00"
    with pytest.raises(TpmFormatError, match="modulus is 2048 bits, keyBits says 1024"):
        parse_tpmt_public(bytes(raw))


def test_ecc_point_off_curve_rejected() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    raw = bytearray(ak_public(key).raw)
    raw[-1] ^= 1  # last byte of y
    with pytest.raises(TpmFormatError, match="not on NIST_P256"):
        parse_tpmt_public(bytes(raw))


def test_scheme_must_fit_key_type() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(TpmFormatError, match="scheme RSASSA not valid"):
        build_public(
            key,
            attributes=ObjectAttributes.SIGN_ENCRYPT,
            scheme=Alg.RSASSA,
            scheme_hash=Alg.SHA256,
        )


def test_unsupported_name_alg_rejected() -> None:
    raw = bytearray(ak_public(ec.generate_private_key(ec.SECP256R1()).public_key()).raw)
    raw[2:4] = b"\x00\x10"  # nameAlg NULL
    with pytest.raises(TpmFormatError, match="unsupported hash algorithm 0x0010"):
        parse_tpmt_public(bytes(raw))


def test_symcipher_and_keyedhash_objects_parse() -> None:
    sym = (
        b"\x00\x25\x00\x0b\x00\x06\x00\x72\x00\x00"  # SYMCIPHER, SHA256, attrs, empty policy
        + b"\x00\x06\x00\x80\x00\x43"  # AES-128-CFB
        + b"\x00\x20"
        + bytes(32)
    )
    pub = parse_tpmt_public(sym)
    assert pub.type is Alg.SYMCIPHER
    assert pub.public_key is None
    assert pub.unique == bytes(32)
    keyed = b"\x00\x08\x00\x0b\x00\x04\x00\x60\x00\x00" + b"\x00\x05\x00\x0b" + b"\x00\x00"
    pub = parse_tpmt_public(keyed)
    assert (pub.type, pub.scheme, pub.scheme_hash) == (Alg.KEYEDHASH, Alg.HMAC, Alg.SHA256)


def test_ak_template_reproduces_tpm2_createak_public_area() -> None:
    """ak_public(key) is byte-identical to the AK tpm2_createak made, so the deluxe quotes'
    AK (published only as PEM) gets its real public area and name."""
    ak = parse_tpm2b_public(vector(f"{TOOLS}/ak.pub").read_bytes())
    assert ak_public(load_pem_key(vector(f"{TOOLS}/akpub.pem"))) == ak
    deluxe = load_pem_key(vector("keylime/quote/keylime_emulator_deluxequote/ak_pub.pem"))
    assert public_key_matches(ak, deluxe)
