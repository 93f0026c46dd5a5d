"""The test PKI: software CAs, EK certificates and certificate chains (real keys, real signatures).

``make_ca`` and ``SoftwareCa`` issue EK certificates for software TPMs
(``tests.support.software_tpm``) and simulated agents; ``make_cert`` builds any certificate a
chain test needs, including broken ones (wrong signer, no basicConstraints, non-DER names as
real Nuvoton EK certificates have).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from allowlists.certs import TCG_AT_TPM_MANUFACTURER, TCG_AT_TPM_MODEL, TCG_AT_TPM_VERSION
from verifier.core.jwk import thumbprint

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
                            x509.NameAttribute(TCG_AT_TPM_MANUFACTURER, "id:54455354"),
                            x509.NameAttribute(TCG_AT_TPM_MODEL, model),
                            x509.NameAttribute(TCG_AT_TPM_VERSION, "id:0001"),
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
    subject = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit) for unit in units]
        + [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_EPOCH)
        .not_valid_after(_EPOCH + timedelta(days=7300))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return SoftwareCa(key=key, certificate=certificate)


# --- certificate chains (any shape, for the EK trust and certificate tests) -----------------------

NOW = datetime(2026, 6, 1, tzinfo=UTC)
EK_CERTIFICATE_EKU = x509.ObjectIdentifier("2.23.133.8.1")
SigningHash = hashes.SHA256 | hashes.SHA384 | hashes.SHA512


@dataclass(frozen=True, slots=True, kw_only=True)
class Issued:
    cert: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "geoattest test"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_cert(
    subject: str,
    *,
    issuer: Issued | None = None,
    key: CertificateIssuerPrivateKeyTypes | None = None,
    signing_key: CertificateIssuerPrivateKeyTypes | None = None,
    ca: bool | None = True,
    path_length: int | None = None,
    key_cert_sign: bool = True,
    not_before: datetime = NOW - timedelta(days=365),
    not_after: datetime = NOW + timedelta(days=365),
    tpm_san: bool = False,
    hash_alg: SigningHash | None = None,
    rsa_padding: padding.PSS | padding.PKCS1v15 | None = None,
    serial: int | None = None,
    subject_name: x509.Name | None = None,
) -> Issued:
    """A certificate for ``subject`` issued by ``issuer`` (self-signed when None).

    ``signing_key`` overrides the key that signs (a forged or wrongly signed certificate);
    ``ca=None`` omits basicConstraints; ``tpm_san`` makes an EK-style leaf (critical SAN
    directoryName with the TCG attributes, keyEncipherment only, EKU 2.23.133.8.1).
    """
    key = key if key is not None else ec_key()
    if subject_name is not None:
        own_name = subject_name
    else:
        own_name = x509.Name([]) if tpm_san else name(subject)
    issuer_name = issuer.cert.subject if issuer is not None else own_name
    signer = signing_key or (issuer.key if issuer is not None else key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(own_name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
            critical=False,
        )
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True
        )
    if tpm_san:
        builder = _ek_leaf_extensions(builder)
    elif ca:
        builder = builder.add_extension(_key_usage(cert_sign=key_cert_sign), critical=True)
    if isinstance(signer, ed25519.Ed25519PrivateKey):
        cert = builder.sign(signer, None)
    elif isinstance(signer, rsa.RSAPrivateKey):
        cert = builder.sign(signer, hash_alg or hashes.SHA256(), rsa_padding=rsa_padding)
    else:
        cert = builder.sign(signer, hash_alg or hashes.SHA256())
    return Issued(cert=cert, key=key)


def _key_usage(*, cert_sign: bool, key_encipherment: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign and not key_encipherment,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _ek_leaf_extensions(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    tpm = x509.Name(
        [
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(TCG_AT_TPM_MANUFACTURER, "id:4E544300"),
                    x509.NameAttribute(TCG_AT_TPM_MODEL, "NPCT75x"),
                    x509.NameAttribute(TCG_AT_TPM_VERSION, "id:00070002"),
                ]
            )
        ]
    )
    return (
        builder.add_extension(x509.SubjectAlternativeName([x509.DirectoryName(tpm)]), critical=True)
        .add_extension(_key_usage(cert_sign=False, key_encipherment=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([EK_CERTIFICATE_EKU]), critical=False)
    )


def multi_valued_name(common_name: str) -> x509.Name:
    """One RDN holding CN, O and C, like Nuvoton's CA names."""
    return x509.Name(
        [
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "geoattest test"),
                    x509.NameAttribute(NameOID.COUNTRY_NAME, "TW"),
                ]
            )
        ]
    )


def non_der_copy(leaf: Issued, issuer: Issued) -> bytes:
    """``leaf`` with its issuer's multi-valued RDN SET out of DER order, re-signed by ``issuer``.

    This is the defect of real Nuvoton EK certificates (keylime #1775): the certificate is
    correctly signed over its non-DER tbsCertificate, and cryptography refuses to parse it.
    Only RSA PKCS#1 v1.5 SHA-256 issuers (fixed signature length) are supported.
    """
    assert isinstance(issuer.key, rsa.RSAPrivateKey)
    der = leaf.der
    tbs = leaf.cert.tbs_certificate_bytes
    rdn = issuer.cert.subject.rdns[0]
    encoded_set = x509.Name([rdn]).public_bytes()[2:]  # strip the outer SEQUENCE header
    header, content = encoded_set[:2], encoded_set[2:]
    assert header[0] == 0x31
    assert header[1] == len(content)
    members = []
    rest = content
    while rest:
        size = 2 + rest[1]
        members.append(rest[:size])
        rest = rest[size:]
    swapped = header + b"".join(reversed(members))
    assert swapped != encoded_set
    assert tbs.count(encoded_set) == 1
    bad_tbs = tbs.replace(encoded_set, swapped)
    signature = issuer.key.sign(bad_tbs, padding.PKCS1v15(), hashes.SHA256())
    old_signature = leaf.cert.signature
    assert len(signature) == len(old_signature)
    assert der.count(old_signature) == 1
    return der.replace(tbs, bad_tbs).replace(old_signature, signature)


# --- JWS signing keys (ES256, raw r||s as JOSE wants) -------------------------------------------


class JwsKey:
    """A P-256 key that signs JWS the JOSE way (ES256: raw ``r || s``), named by its RFC 7638
    thumbprint; ``keys`` is the keyring a verifier of such signatures is given."""

    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        self.kid = thumbprint(self.private.public_key())

    def sign(self, data: bytes) -> bytes:
        r, s = decode_dss_signature(self.private.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    @property
    def keys(self) -> dict[str, ec.EllipticCurvePublicKey]:
        return {self.kid: self.private.public_key()}
