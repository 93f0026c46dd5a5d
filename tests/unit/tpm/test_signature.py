"""TPMT_SIGNATURE parsing/encoding and verification with TPM public areas."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from geoattest.errors import QuoteSignatureInvalid, TpmFormatError
from tests.support.software_tpm import SoftwareAk
from tests.unit.tpm.vectors import QuoteVector
from tpm import (
    Alg,
    ObjectAttributes,
    TpmSignature,
    build_public,
    ek_public,
    encode_tpmt_signature,
    parse_tpmt_signature,
    verify_signature,
)

MESSAGE = b"\xffTCG attest bytes"


def test_rsa_vector_parses_and_verifies(tools_vector: QuoteVector) -> None:
    sig = parse_tpmt_signature(tools_vector.signature)
    assert (sig.sig_alg, sig.hash_alg, len(sig.rsa)) == (Alg.RSASSA, Alg.SHA256, 256)
    assert encode_tpmt_signature(sig) == tools_vector.signature
    verify_signature(tools_vector.ak, tools_vector.attest, sig)


def test_rsa_vector_flipped_byte_fails(tools_vector: QuoteVector) -> None:
    sig = parse_tpmt_signature(tools_vector.signature)
    attest = bytearray(tools_vector.attest)
    attest[5] ^= 0x01
    with pytest.raises(QuoteSignatureInvalid, match="RSASSA-SHA256 signature does not verify"):
        verify_signature(tools_vector.ak, bytes(attest), sig)
    bad_sig = TpmSignature(sig_alg=sig.sig_alg, hash_alg=sig.hash_alg, rsa=bytes(256))
    with pytest.raises(QuoteSignatureInvalid):
        verify_signature(tools_vector.ak, tools_vector.attest, bad_sig)


def test_ecdsa_round_trip_and_tamper() -> None:
    sim = SoftwareAk.ecc()
    wire = sim.sign(MESSAGE)
    sig = parse_tpmt_signature(wire)
    assert (sig.sig_alg, sig.hash_alg, len(sig.r), len(sig.s)) == (Alg.ECDSA, Alg.SHA256, 32, 32)
    assert encode_tpmt_signature(sig) == wire
    verify_signature(sim.public, MESSAGE, sig)
    with pytest.raises(QuoteSignatureInvalid, match="ECDSA-SHA256 signature does not verify"):
        verify_signature(sim.public, MESSAGE + b"x", sig)
    swapped = TpmSignature(sig_alg=Alg.ECDSA, hash_alg=Alg.SHA256, r=sig.s, s=sig.r)
    with pytest.raises(QuoteSignatureInvalid):
        verify_signature(sim.public, MESSAGE, swapped)
    other = SoftwareAk.ecc()
    with pytest.raises(QuoteSignatureInvalid):
        verify_signature(other.public, MESSAGE, sig)


def test_der_conversion_round_trip() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.sign(MESSAGE, ec.ECDSA(hashes.SHA256()))
    sig = TpmSignature.ecdsa_from_der(der)
    assert sig.to_der() == der
    with pytest.raises(QuoteSignatureInvalid, match="no DER form"):
        TpmSignature(sig_alg=Alg.RSASSA, hash_alg=Alg.SHA256, rsa=b"").to_der()


def test_rsapss_verifies_with_unrestricted_scheme() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = build_public(key.public_key(), attributes=ObjectAttributes.SIGN_ENCRYPT)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    raw = key.sign(MESSAGE, pss, hashes.SHA256())
    sig = TpmSignature(sig_alg=Alg.RSAPSS, hash_alg=Alg.SHA256, rsa=raw)
    verify_signature(pub, MESSAGE, sig)
    with pytest.raises(QuoteSignatureInvalid):
        verify_signature(pub, MESSAGE[:-1], sig)


def test_scheme_fixed_by_key_is_enforced() -> None:
    sim = SoftwareAk.rsa()
    sim.sig_alg = Alg.RSAPSS  # a valid PSS signature, but the AK's scheme is RSASSA
    sig = parse_tpmt_signature(sim.sign(MESSAGE))
    with pytest.raises(QuoteSignatureInvalid, match="differs from the key's scheme RSASSA-SHA256"):
        verify_signature(sim.public, MESSAGE, sig)


def test_key_must_be_signing_key() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.sign(MESSAGE, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(QuoteSignatureInvalid, match="not a signing key"):
        verify_signature(ek_public(key.public_key()), MESSAGE, TpmSignature.ecdsa_from_der(der))


def test_signature_kind_must_fit_key() -> None:
    ecc_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    ecc_free = build_public(ecc_key, attributes=ObjectAttributes.SIGN_ENCRYPT)
    with pytest.raises(QuoteSignatureInvalid, match="RSASSA signature for an ECC key"):
        verify_signature(ecc_free, MESSAGE, TpmSignature(sig_alg=Alg.RSASSA, hash_alg=Alg.SHA256))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_free = build_public(key.public_key(), attributes=ObjectAttributes.SIGN_ENCRYPT)
    short = TpmSignature(sig_alg=Alg.RSASSA, hash_alg=Alg.SHA256, rsa=bytes(255))
    with pytest.raises(QuoteSignatureInvalid, match="255 bytes, key modulus is 2048 bits"):
        verify_signature(rsa_free, MESSAGE, short)
    with pytest.raises(QuoteSignatureInvalid, match="ECDSA signature for an RSA key"):
        verify_signature(rsa_free, MESSAGE, TpmSignature(sig_alg=Alg.ECDSA, hash_alg=Alg.SHA256))


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ("0005000b0000", "unsupported signature scheme HMAC"),
        ("0014", "truncated"),
        ("00147777", "unknown TPM_ALG_ID 0x7777"),
        ("0018000b00010100", "truncated"),
        ("0018000b0001010001020000", "trailing"),
    ],
)
def test_malformed_signatures_rejected(wire: str, message: str) -> None:
    with pytest.raises(TpmFormatError, match=message):
        parse_tpmt_signature(bytes.fromhex(wire))
