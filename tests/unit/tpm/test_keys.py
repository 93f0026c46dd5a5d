"""Attribute policies for AK, EK and location key: every rule has a test that breaks it."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from geoattest.errors import AkInvalid, EkMismatch, LocationKeyInvalid
from tests.paths import vector
from tpm import (
    Alg,
    ObjectAttributes,
    SymmetricDef,
    ak_public,
    build_public,
    check_ak_attributes,
    check_ek_attributes,
    check_location_key_attributes,
    ek_public,
    location_key_public,
    parse_tpm2b_public,
)
from tpm.templates import AK_ATTRIBUTES, EK_ATTRIBUTES, LOCATION_KEY_ATTRIBUTES

A = ObjectAttributes
P256 = ec.generate_private_key(ec.SECP256R1()).public_key()
RSA2048 = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()


def test_real_vectors_pass() -> None:
    check_ak_attributes(
        parse_tpm2b_public(vector("keylime/tpm2_tools_emulator/ak.pub").read_bytes())
    )
    check_ek_attributes(
        parse_tpm2b_public(vector("keylime/tpm2_tools_emulator/ek.pub").read_bytes())
    )
    for kind in ("rsa", "ecc"):
        path = f"keylime/ek_ca/leaf/infineon_optiga_{kind}_ek_leaf_CA035.expected_tpm2b_public.bin"
        check_ek_attributes(parse_tpm2b_public(vector(path).read_bytes()))


@pytest.mark.parametrize("key", [P256, RSA2048])
def test_software_ak_passes(key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> None:
    check_ak_attributes(ak_public(key))


@pytest.mark.parametrize(
    "flag", [A.RESTRICTED, A.SIGN_ENCRYPT, A.FIXED_TPM, A.FIXED_PARENT, A.SENSITIVE_DATA_ORIGIN]
)
def test_ak_missing_required_attribute_rejected(flag: ObjectAttributes) -> None:
    pub = ak_public(P256, attributes=AK_ATTRIBUTES & ~flag)
    with pytest.raises(AkInvalid, match=f"AK attributes lack {flag.name}"):
        check_ak_attributes(pub)


def test_ak_that_can_decrypt_rejected() -> None:
    with pytest.raises(AkInvalid, match="must not set DECRYPT"):
        check_ak_attributes(ak_public(P256, attributes=AK_ATTRIBUTES | A.DECRYPT))


@pytest.mark.parametrize(
    ("key", "scheme", "message"),
    [
        (P256, Alg.NULL, "scheme must be ECDSA-SHA256, got NULL"),
        (RSA2048, Alg.RSAPSS, "scheme must be RSASSA-SHA256, got RSAPSS"),
        (ec.generate_private_key(ec.SECP384R1()).public_key(), Alg.ECDSA, "NIST_P256"),
        (
            rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key(),  # noqa: S505 - the weak key under test
            Alg.RSASSA,
            "RSA-2048, got RSA-1024",
        ),
    ],
)
def test_ak_key_type_and_scheme_enforced(
    key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey, scheme: Alg, message: str
) -> None:
    pub = build_public(
        key,
        attributes=AK_ATTRIBUTES,
        scheme=scheme,
        scheme_hash=None if scheme is Alg.NULL else Alg.SHA256,
    )
    with pytest.raises(AkInvalid, match=message):
        check_ak_attributes(pub)


def test_ak_scheme_hash_must_be_sha256() -> None:
    pub = build_public(P256, attributes=AK_ATTRIBUTES, scheme=Alg.ECDSA, scheme_hash=Alg.SHA384)
    with pytest.raises(AkInvalid, match="got ECDSA-SHA384"):
        check_ak_attributes(pub)


def test_ak_name_alg_must_be_sha256() -> None:
    pub = build_public(
        P256, attributes=AK_ATTRIBUTES, name_alg=Alg.SHA1, scheme=Alg.ECDSA, scheme_hash=Alg.SHA256
    )
    with pytest.raises(AkInvalid, match="nameAlg must be SHA256, got SHA1"):
        check_ak_attributes(pub)


def test_ek_template_passes_and_ak_is_not_an_ek() -> None:
    check_ek_attributes(ek_public(P256))
    check_ek_attributes(ek_public(RSA2048))
    with pytest.raises(EkMismatch, match="EK attributes lack DECRYPT"):
        check_ek_attributes(ak_public(P256))


@pytest.mark.parametrize("flag", [A.RESTRICTED, A.DECRYPT, A.FIXED_TPM, A.FIXED_PARENT])
def test_ek_missing_attribute_rejected(flag: ObjectAttributes) -> None:
    pub = build_public(
        RSA2048,
        attributes=EK_ATTRIBUTES & ~flag,
        symmetric=SymmetricDef(alg=Alg.AES, key_bits=128, mode=Alg.CFB),
    )
    with pytest.raises(EkMismatch, match=f"lack {flag.name}"):
        check_ek_attributes(pub)


def test_ek_needs_aes_cfb_and_no_sign() -> None:
    with pytest.raises(EkMismatch, match="symmetric must be AES-128/192/256-CFB"):
        check_ek_attributes(build_public(RSA2048, attributes=EK_ATTRIBUTES))
    signing = build_public(
        RSA2048,
        attributes=EK_ATTRIBUTES | A.SIGN_ENCRYPT,
        symmetric=SymmetricDef(alg=Alg.AES, key_bits=128, mode=Alg.CFB),
    )
    with pytest.raises(EkMismatch, match="must not set SIGN_ENCRYPT"):
        check_ek_attributes(signing)


@pytest.mark.parametrize("bits", [0, 64, 100, 512])
def test_ek_with_an_aes_key_size_no_tpm_has_is_refused(bits: int) -> None:
    """Before MakeCredential would trip over it (a 500); found by review."""
    odd = build_public(
        RSA2048,
        attributes=EK_ATTRIBUTES,
        symmetric=SymmetricDef(alg=Alg.AES, key_bits=bits, mode=Alg.CFB),
    )
    with pytest.raises(EkMismatch, match="AES-128/192/256-CFB"):
        check_ek_attributes(odd)


def test_location_key_rules() -> None:
    check_location_key_attributes(location_key_public(P256))
    with pytest.raises(LocationKeyInvalid, match="must not set RESTRICTED"):
        check_location_key_attributes(ak_public(P256))
    with pytest.raises(LocationKeyInvalid, match="must be ECC NIST_P256, got RSA"):
        check_location_key_attributes(location_key_public(RSA2048))
    for flag in (A.FIXED_TPM, A.FIXED_PARENT, A.SENSITIVE_DATA_ORIGIN, A.SIGN_ENCRYPT):
        pub = location_key_public(P256, attributes=LOCATION_KEY_ATTRIBUTES & ~flag)
        with pytest.raises(LocationKeyInvalid, match=f"lack {flag.name}"):
            check_location_key_attributes(pub)
    with pytest.raises(LocationKeyInvalid, match="must not set DECRYPT"):
        check_location_key_attributes(
            location_key_public(P256, attributes=LOCATION_KEY_ATTRIBUTES | A.DECRYPT)
        )
