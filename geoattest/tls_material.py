"""TLS keys and certificates for the verifier → agent channel (mTLS), and their files.

Two kinds of material, both ECDSA P-256:

- The agent's *server* identity: a self-signed certificate (CN = agent id, SAN = the advertised
  host). It is not trusted through a CA: the agent sends its DER at enrolment, the registrar keeps
  it, and the verifier pins exactly that certificate.
- The verifier's *client* identity: a small CA (the file an agent is given as
  ``verifier_client_ca``) and a client certificate issued by it. Agents accept a connection only
  when the client certificate chains to that CA.

Used by the agent (``agent/tls.py``), the verifier, quickstart and tests; this module imports
nothing of ours. Private keys are written with mode 0600 and never logged.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from geoattest.private_files import ensure_private_dir

__all__ = [
    "CertifiedKey",
    "ClientTlsFiles",
    "create_client_ca",
    "ensure_verifier_client_tls",
    "fingerprint",
    "issue_client_certificate",
    "load_certified_key",
    "self_signed_server_certificate",
    "subject_alt_names",
    "write_certified_key",
]

SERVER_CERT_DAYS = 3650  # pinned, not CA-validated: rotation is a re-enrolment
CLIENT_CA_DAYS = 3650
CLIENT_CERT_DAYS = 825
_BACKDATE = timedelta(minutes=5)  # tolerate small clock skew between nodes


@dataclass(frozen=True, slots=True)
class CertifiedKey:
    """A private key and the certificate that carries its public key."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def certificate_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def fingerprint(certificate_der: bytes) -> str:
    """Lowercase hex SHA-256 of a DER certificate (what logs show instead of the certificate)."""
    digest = hashes.Hash(hashes.SHA256())
    digest.update(certificate_der)
    return digest.finalize().hex()


def subject_alt_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    """SAN entries for ``hosts``: IP addresses as iPAddress, anything else as dNSName."""
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):  # unique, order kept
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def self_signed_server_certificate(
    common_name: str, hosts: Sequence[str], *, now: datetime | None = None
) -> CertifiedKey:
    """A new P-256 key and a self-signed TLS server certificate for it (CN, SAN = ``hosts``).

    A client pins it by using the certificate itself as its only trust anchor (``cafile``) with
    host name checking on. It has no KeyUsage extension on purpose: OpenSSL accepts a
    self-signed leaf as a trust anchor only when it counts as self-signed, which a KeyUsage
    without keyCertSign prevents ("self-signed certificate" verify error).

    Raises ValueError when ``hosts`` is empty (a client checks the host name against the SAN).
    """
    if not hosts:
        raise ValueError("a server certificate needs at least one host for its SAN")
    now = now or datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (
        _base_builder(name, name, key.public_key(), now, SERVER_CERT_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # clientAuth too: a push agent presents this same registered certificate (ADR 19).
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(subject_alt_names(hosts)), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertifiedKey(key, certificate)


def issue_server_certificate(ca: CertifiedKey, hosts: Sequence[str]) -> CertifiedKey:
    """A TLS server certificate for ``hosts`` issued by ``ca`` (the verifier's push listener,
    which agents verify with the CA they already trust: ``verifier_client_ca``)."""
    now = datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "geoattest verifier push")])
    certificate = (
        _base_builder(subject, ca.certificate.subject, key.public_key(), now, SERVER_CERT_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signing=True, cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(subject_alt_names(hosts)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return CertifiedKey(key, certificate)


def ensure_push_server_tls(directory: Path, hosts: Sequence[str]) -> tuple[Path, Path]:
    """(certificate, key) of the push listener in ``directory`` (``push.pem``,
    ``push-key.pem``), issued by the verifier's client CA for ``hosts``; an existing one is kept
    while its SAN covers ``hosts``."""
    files = ensure_verifier_client_tls(directory)
    cert, key = directory / "push.pem", directory / "push-key.pem"
    if cert.is_file() and key.is_file():
        san = load_certified_key(cert, key).certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
        present = {str(v) for v in san.value.get_values_for_type(x509.IPAddress)}
        present |= set(san.value.get_values_for_type(x509.DNSName))
        if set(hosts) <= present:
            return cert, key
    ca = load_certified_key(files.ca_cert, directory / "client-ca-key.pem")
    write_certified_key(issue_server_certificate(ca, hosts), cert, key)
    return cert, key


def create_client_ca(
    common_name: str = "geoattest verifier client CA", *, now: datetime | None = None
) -> CertifiedKey:
    """A new self-signed CA that issues verifier client certificates (path length 0)."""
    now = now or datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (
        _base_builder(name, name, key.public_key(), now, CLIENT_CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signing=False, cert_sign=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return CertifiedKey(key, certificate)


def issue_client_certificate(
    ca: CertifiedKey, common_name: str = "geoattest verifier", *, now: datetime | None = None
) -> CertifiedKey:
    """A new P-256 key and a TLS client certificate for it, issued by ``ca``."""
    now = now or datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (
        _base_builder(subject, ca.certificate.subject, key.public_key(), now, CLIENT_CERT_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signing=True, cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return CertifiedKey(key, certificate)


def write_certified_key(material: CertifiedKey, cert_path: Path, key_path: Path) -> None:
    """Write the certificate (PEM, 0644) and the key (PEM PKCS#8, created 0600)."""
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    _write_private(key_path, material.key_pem)
    cert_path.write_bytes(material.certificate_pem)


def load_certified_key(cert_path: Path, key_path: Path) -> CertifiedKey:
    """Read a PEM certificate and its PEM key; ValueError when they do not match or are not EC."""
    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path} does not hold an EC private key")
    if key.public_key() != certificate.public_key():
        raise ValueError(f"{key_path} is not the key of the certificate in {cert_path}")
    return CertifiedKey(key, certificate)


@dataclass(frozen=True, slots=True)
class ClientTlsFiles:
    """The verifier's mTLS files: the CA agents trust, and the client certificate and key."""

    ca_cert: Path
    client_cert: Path
    client_key: Path


def ensure_verifier_client_tls(directory: Path) -> ClientTlsFiles:
    """Create-or-load the verifier's client CA and client certificate in ``directory``.

    Files: ``client-ca.pem`` (give it to agents as ``verifier_client_ca``), ``client-ca-key.pem``,
    ``client.pem``, ``client-key.pem``. Existing files are kept as they are.
    """
    files = ClientTlsFiles(
        ca_cert=directory / "client-ca.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
    )
    ensure_private_dir(directory)  # the CA and client keys live here: owner-only, checked
    ca_key = directory / "client-ca-key.pem"
    if files.ca_cert.is_file() and ca_key.is_file():
        ca = load_certified_key(files.ca_cert, ca_key)
    else:
        ca = create_client_ca()
        write_certified_key(ca, files.ca_cert, ca_key)
    if not (files.client_cert.is_file() and files.client_key.is_file()):
        write_certified_key(issue_client_certificate(ca), files.client_cert, files.client_key)
    return files


def _base_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    now: datetime,
    days: int,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _key_usage(*, signing: bool, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=signing,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file created with mode 0600 (replacing any older file)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
