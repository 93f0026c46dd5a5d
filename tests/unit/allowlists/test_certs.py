"""allowlists.certs: parsing of real (also non-strict-DER) and generated certificates."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from allowlists.certs import EkCertificate, load_certificate, load_certificates
from geoattest.errors import EkUntrusted
from tests.support.software_pki import make_cert, multi_valued_name, non_der_copy
from tests.unit.allowlists.conftest import leaf_bytes, store_cert

NUVOTON_LEAF = "nuvoton_ek_leaf_nonDER.der"
NUVOTON_SHA256 = "933cdb174526b0b63216e5bdbd65a18c3f2ce3584a91ac2bbfa27cb526f932a0"


def test_every_vendor_ca_file_parses(cert_store_dir: Path) -> None:
    files = sorted(cert_store_dir.glob("*.pem"))
    assert len(files) >= 50  # README says 50; the copy here holds 51
    for path in files:
        (cert,) = load_certificates(path.read_bytes())
        assert cert.is_ca, path.name
        assert cert.key_cert_sign, path.name


def test_cryptography_refuses_the_nuvoton_leaf_so_the_fallback_is_exercised() -> None:
    with pytest.raises(ValueError, match="InvalidSetOrdering"):
        x509.load_der_x509_certificate(leaf_bytes(NUVOTON_LEAF))


def test_non_der_nuvoton_leaf_parses_with_original_bytes_kept() -> None:
    raw = leaf_bytes(NUVOTON_LEAF)
    cert = load_certificate(raw)
    assert cert.reencoded
    assert cert.raw == raw
    assert cert.fingerprint_hex == NUVOTON_SHA256  # = openssl x509 -fingerprint -sha256
    assert cert.tbs == raw[4 : 4 + 4 + 759]  # original tbsCertificate TLV (openssl asn1parse)
    assert cert.tbs != cert.view.tbs_certificate_bytes  # the re-encoding differs
    assert cert.subject == ""
    assert cert.issuer_name == x509.Name.from_rfc4514_string(
        "CN=Nuvoton TPM Root CA 2111+O=Nuvoton Technology Corporation+C=TW"
    )
    assert cert.serial == 0x8E71607435E271F985D6
    assert (cert.tpm_manufacturer, cert.tpm_model, cert.tpm_version) == (
        "id:4E544300",
        "NPCT75x",
        "id:00070002",
    )
    assert not cert.is_ca
    assert cert.not_after.year == 2039


def test_signature_is_checked_over_the_original_tbs_bytes() -> None:
    leaf = load_certificate(leaf_bytes(NUVOTON_LEAF))
    root = load_certificate(store_cert("NUVO_2111"))
    assert leaf.is_signed_by(root)
    assert not leaf.is_signed_by(load_certificate(store_cert("NUVO_2110")))


def test_infineon_leaf_tcg_san_and_strict_der() -> None:
    cert = load_certificate(leaf_bytes("infineon_optiga_ecc_ek_leaf_CA035.der"))
    assert not cert.reencoded
    assert cert.tpm_manufacturer == "id:49465800"
    assert cert.tpm_model == "SLB 9670 TPM2.0"


def test_pem_and_der_give_the_same_certificate() -> None:
    issued = make_cert("pem-der")
    from_pem = load_certificate(issued.pem)
    from_der = load_certificate(issued.der)
    assert from_pem == from_der
    assert from_pem.fingerprint == hashlib.sha256(issued.der).digest()


def test_pem_with_leading_text_is_read() -> None:
    (cert,) = load_certificates(store_cert("Nationz_TPM_EK"))  # `openssl x509 -text` output
    assert "Nationz" in cert.subject


def test_load_certificates_reads_a_bundle() -> None:
    a, b = make_cert("a"), make_cert("b")
    certs = load_certificates(a.pem + b"\n" + b.pem)
    assert [c.subject_name for c in certs] == [a.cert.subject, b.cert.subject]


def test_load_certificate_refuses_a_bundle() -> None:
    bundle = make_cert("a").pem + make_cert("b").pem
    with pytest.raises(EkUntrusted, match="expected one PEM certificate, found 2"):
        load_certificate(bundle)


def test_private_key_pem_is_refused() -> None:
    issued = make_cert("key")
    key_pem = issued.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(EkUntrusted, match="'PRIVATE KEY' is not a CERTIFICATE"):
        load_certificates(issued.pem + key_pem)


def test_broken_base64_is_refused() -> None:
    pem = make_cert("b64").pem.replace(b"\n", b"\n!", 2)
    with pytest.raises(EkUntrusted, match="not valid base64"):
        load_certificate(pem)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda der: der + b"\x00", "trailing data"),
        (lambda der: der[:-1], "claims"),
        (lambda der: b"\x30\x80" + der[2:], "indefinite length"),
        (lambda der: b"", "neither DER"),
        (lambda der: b"hello", "neither DER"),
    ],
)
def test_malformed_encodings_are_refused(mutate: object, reason: str) -> None:
    assert callable(mutate)
    der = make_cert("broken").der
    with pytest.raises(EkUntrusted, match=reason):
        load_certificate(mutate(der))


def test_tbs_and_outer_signature_algorithms_must_agree() -> None:
    der = make_cert("algs").der  # ecdsa-with-SHA256: OID 1.2.840.10045.4.3.2
    oid = bytes.fromhex("06082a8648ce3d040302")
    other = bytes.fromhex("06082a8648ce3d040303")  # ecdsa-with-SHA384, same length
    last = der.rindex(oid)  # the outer signatureAlgorithm comes after the tbs
    tampered = der[:last] + other + der[last + len(oid) :]
    with pytest.raises(EkUntrusted, match="differs from the outer signatureAlgorithm"):
        load_certificate(tampered)


def test_equality_and_hash_are_by_fingerprint() -> None:
    issued = make_cert("eq")
    a, b = load_certificate(issued.der), load_certificate(issued.pem)
    assert a == b
    assert len({a, b}) == 1
    assert a != load_certificate(make_cert("eq").der)


def _parse_or_untrusted(data: bytes) -> EkCertificate | None:
    """Parse; ``EkUntrusted`` is the only error allowed for any input."""
    try:
        return load_certificate(data)
    except EkUntrusted:
        return None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_only_raise_ek_untrusted(data: bytes) -> None:
    _parse_or_untrusted(data)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_real_certificates_only_raise_ek_untrusted(data: st.DataObject) -> None:
    raw = bytearray(
        leaf_bytes(
            data.draw(st.sampled_from([NUVOTON_LEAF, "infineon_optiga_rsa_ek_leaf_CA035.der"]))
        )
    )
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        index = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        raw[index] = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.integers(min_value=0, max_value=len(raw)))
    parsed = _parse_or_untrusted(bytes(raw[:cut]) if data.draw(st.booleans()) else bytes(raw))
    if parsed is not None:
        assert parsed.fingerprint == hashlib.sha256(parsed.raw).digest()


@pytest.mark.parametrize(("encoded", "value"), [(b"\x00", 0), (b"\xff", -1)])
def test_non_positive_serial_is_refused(encoded: bytes, value: int) -> None:
    der = make_cert("serial", serial=1).der
    serial_tlv = b"\xa0\x03\x02\x01\x02\x02\x01\x01"  # version v3, then INTEGER 1
    assert der.count(serial_tlv) == 1
    tampered = der.replace(serial_tlv, serial_tlv[:-1] + encoded)
    with pytest.raises(EkUntrusted, match=f"serial number {value} is not positive"):
        load_certificate(tampered)


def test_generated_non_der_rsa_signed_leaf_verifies_over_original_tbs() -> None:
    ca = make_cert(
        "RSA CA",
        key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        subject_name=multi_valued_name("RSA CA"),
    )
    raw = non_der_copy(make_cert("ek", issuer=ca, ca=False), ca)
    with pytest.raises(ValueError, match="InvalidSetOrdering"):
        x509.load_der_x509_certificate(raw)
    leaf = load_certificate(raw)
    assert leaf.reencoded
    assert leaf.issuer_name == ca.cert.subject
    assert leaf.is_signed_by(load_certificate(ca.der))
