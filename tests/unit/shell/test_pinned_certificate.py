"""What an agent's registered TLS certificate must be before a verifier pins it."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from geoattest.pinned_certificate import CertificateNotPinnable, pinnable_certificate
from geoattest.tls_material import (
    create_client_ca,
    issue_client_certificate,
    self_signed_server_certificate,
)
from tests.paths import vector


def _key_usage(*, cert_sign: bool = False, crl_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _self_signed(
    *extensions: x509.ExtensionType, signer: ec.EllipticCurvePrivateKey | None = None
) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agent")])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(signer or key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_an_agents_own_certificate_is_pinnable() -> None:
    made = self_signed_server_certificate("edge-01", ["127.0.0.1"])
    assert pinnable_certificate(made.certificate_der) == made.certificate


@pytest.mark.parametrize(
    ("der", "why"),
    [
        (b"\x30\x03\x02\x01\x00", "not a DER X.509 certificate"),
        (create_client_ca().certificate_der, "CA certificate"),
        (issue_client_certificate(create_client_ca()).certificate_der, "not self-signed"),
        (_self_signed(signer=ec.generate_private_key(ec.SECP256R1())), "does not verify"),
        (
            _self_signed(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING])),
            "TLS server use",
        ),
        (_self_signed(_key_usage(cert_sign=True)), "sign certificates"),
        (_self_signed(_key_usage(crl_sign=True)), "sign certificates"),
        (vector("x509/self-signed-v1.der").read_bytes(), "not an X.509 v3"),
    ],
    ids=[
        "garbage",
        "ca",
        "issued-by-another",
        "forged-self-signature",
        "not-for-tls",
        "may-sign-certificates",
        "may-sign-crls",
        "v1",
    ],
)
def test_what_cannot_be_pinned_is_refused_with_its_reason(der: bytes, why: str) -> None:
    with pytest.raises(CertificateNotPinnable, match=why):
        pinnable_certificate(der)
