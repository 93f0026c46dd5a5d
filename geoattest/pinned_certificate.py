"""What an agent's registered TLS certificate must be before anyone pins it.

A verifier pins the certificate an agent registered: a pull round's client uses it as its only
trust anchor, and the push listener's trust store holds the push agents' certificates and
nothing else (ADR 19). Either way the certificate becomes a trust anchor, so it must be what
``self_signed_server_certificate`` makes: one self-signed leaf. A CA certificate there would
make every certificate it signs acceptable as that agent (and, on the push listener, as any
agent whose name its holder claims until the per-agent check); a certificate that does not
parse would make OpenSSL refuse the whole trust store.

Pure: DER in, the parsed certificate or ``CertificateNotPinnable`` out.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID

__all__ = ["CertificateNotPinnable", "pinnable_certificate"]


class CertificateNotPinnable(ValueError):
    """The certificate cannot serve as an agent's pinned identity; the message says why."""


def pinnable_certificate(der: bytes) -> x509.Certificate:
    """The parsed certificate when ``der`` is a self-signed leaf usable for client and server
    TLS; ``CertificateNotPinnable`` otherwise."""
    try:
        certificate = x509.load_der_x509_certificate(der)
    except ValueError as e:
        raise CertificateNotPinnable("not a DER X.509 certificate") from e
    if certificate.version is not x509.Version.v3:  # OpenSSL takes a self-signed v1 for a CA
        raise CertificateNotPinnable("it is not an X.509 v3 certificate")
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        pass
    except ValueError as e:  # an extension that does not decode
        raise CertificateNotPinnable(f"its extensions do not parse ({e})") from e
    else:
        if constraints.value.ca:
            raise CertificateNotPinnable("it is a CA certificate, not an agent's own leaf")
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        pass
    else:  # OpenSSL takes a certificate that may sign certificates or CRLs for an issuer
        if usage.key_cert_sign or usage.crl_sign:
            raise CertificateNotPinnable("its key usage lets it sign certificates, as a CA's")
    if certificate.issuer != certificate.subject:
        raise CertificateNotPinnable("it is not self-signed (issuer differs from subject)")
    try:
        certificate.verify_directly_issued_by(certificate)
    except (InvalidSignature, ValueError, TypeError) as e:
        raise CertificateNotPinnable("its self-signature does not verify") from e
    try:
        extended = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return certificate
    if ExtendedKeyUsageOID.SERVER_AUTH not in extended:
        raise CertificateNotPinnable("its extended key usage does not allow TLS server use")
    return certificate
