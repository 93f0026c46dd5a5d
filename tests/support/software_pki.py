"""Software EK certificates and keys for tests that need no TPM (real cryptography, test CA)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class SoftwareCa:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue_ek_certificate(
        self, ek_key: ec.EllipticCurvePublicKey, *, model: str = "TESTTPM"
    ) -> bytes:
        """DER of an EK certificate for ``ek_key``: empty subject, critical SAN (TPM manufacturer
        ``id:54455354``, ``model``, version), like real ones."""
        san = x509.SubjectAlternativeName(
            [
                x509.DirectoryName(
                    x509.Name(
                        [
                            x509.NameAttribute(
                                x509.ObjectIdentifier("2.23.133.2.1"), "id:54455354"
                            ),
                            x509.NameAttribute(x509.ObjectIdentifier("2.23.133.2.2"), model),
                            x509.NameAttribute(x509.ObjectIdentifier("2.23.133.2.3"), "id:0001"),
                        ]
                    )
                )
            ]
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.certificate.subject)
            .public_key(ek_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(_EPOCH)
            .not_valid_after(_EPOCH + timedelta(days=3650))
            .add_extension(san, critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        return builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def make_ca(
    common_name: str = "Test TPM Manufacturer Root", *, units: Sequence[str] = ()
) -> SoftwareCa:
    """A self-signed root; ``units`` add OU attributes to its subject (long subjects)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit) for unit in units]
        + [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_EPOCH)
        .not_valid_after(_EPOCH + timedelta(days=7300))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return SoftwareCa(key=key, certificate=certificate)
