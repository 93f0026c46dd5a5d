"""EK and CA certificates as typed values: parse PEM or DER, including non-strict DER.

Real TPM EK certificates are not always strict DER: Nuvoton's have out-of-order multi-valued RDN
SETs, which python-cryptography refuses (keylime issue #1775). ``load_certificate`` therefore:

1. keeps the original bytes: the fingerprint is sha256 over them, and signatures are verified
   over the original ``tbsCertificate`` bytes cut out by a minimal TLV walk (``_der.py``);
2. reads the fields with cryptography, and, only if cryptography refuses the encoding,
   from a strict-DER re-encoding made with pyasn1 (``_reencode.py``, ``reencoded=True``).

Certificates whose serial number is not positive are refused (RFC 5280 4.1.2.2; cryptography
deprecates them). Anything that is not a certificate raises ``EkUntrusted`` (an EK we cannot
read is an EK we do not trust); ``EkTrustStore.from_blobs`` turns that into ``PolicyInvalid``
naming the file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from allowlists._der import CertificateParts, split_certificate
from allowlists._reencode import reencode_der
from geoattest.errors import EkUntrusted

TCG_AT_TPM_MANUFACTURER = x509.ObjectIdentifier("2.23.133.2.1")
TCG_AT_TPM_MODEL = x509.ObjectIdentifier("2.23.133.2.2")
TCG_AT_TPM_VERSION = x509.ObjectIdentifier("2.23.133.2.3")

_ExtT = TypeVar("_ExtT", bound=x509.ExtensionType)

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
# Errors cryptography raises on certificates it cannot (fully) read.
_PARSE_ERRORS = (
    ValueError,
    UnsupportedAlgorithm,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
    x509.InvalidVersion,
    TypeError,  # cryptography builds lazily parsed names with TypeError checks (a BIT STRING
    # value under an OID other than x500UniqueIdentifier); from untrusted bytes, not a bug
)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class EkCertificate:
    """One X.509 certificate (EK leaf or CA). Equality and hash are by ``fingerprint``."""

    raw: bytes
    """The certificate exactly as given (DER; for PEM input, the DER inside the PEM block)."""
    view: x509.Certificate
    """cryptography's view of the fields (of the re-encoding when ``reencoded``)."""
    reencoded: bool
    tbs: bytes
    """The original ``tbsCertificate`` bytes: what the issuer signed."""
    signature: bytes
    fingerprint: bytes
    """sha256 over ``raw``."""
    subject: str
    """RFC 4514 string ('' for the empty subject of most EK certificates)."""
    issuer: str
    serial: int
    not_before: datetime
    not_after: datetime
    is_ca: bool
    """basicConstraints cA=TRUE."""
    path_length: int | None
    key_cert_sign: bool
    """keyUsage allows keyCertSign, or there is no keyUsage extension."""
    subject_key_id: bytes | None
    authority_key_id: bytes | None
    public_key: CertificatePublicKeyTypes
    tpm_manufacturer: str | None
    tpm_model: str | None
    tpm_version: str | None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EkCertificate) and other.fingerprint == self.fingerprint

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()

    @property
    def subject_name(self) -> x509.Name:
        return self.view.subject

    @property
    def issuer_name(self) -> x509.Name:
        return self.view.issuer

    @property
    def label(self) -> str:
        """How error messages name this certificate: its subject, or serial and issuer."""
        if self.subject:
            return f"'{self.subject}'"
        return f"'serial 0x{self.serial:x} issued by {self.issuer}'"

    def is_signed_by(self, issuer: EkCertificate) -> bool:
        """Whether ``issuer``'s public key verifies this certificate's signature.

        The signature is checked over the original tbsCertificate bytes. A key whose type does
        not fit the signature algorithm gives False. Raises ``EkUntrusted`` when the signature
        algorithm is not one we support (RSA PKCS#1 v1.5, RSA-PSS, ECDSA).
        """
        try:
            params = self.view.signature_algorithm_parameters
            hash_alg = self.view.signature_hash_algorithm
        except (UnsupportedAlgorithm, ValueError) as e:
            raise EkUntrusted(
                f"signature algorithm {self.view.signature_algorithm_oid.dotted_string} of "
                f"certificate {self.label} is not supported"
            ) from e
        key = issuer.public_key
        try:
            if isinstance(params, padding.PKCS1v15 | padding.PSS) and hash_alg is not None:
                if not isinstance(key, rsa.RSAPublicKey):
                    return False
                key.verify(self.signature, self.tbs, params, hash_alg)
            elif isinstance(params, ec.ECDSA):
                if not isinstance(key, ec.EllipticCurvePublicKey):
                    return False
                key.verify(self.signature, self.tbs, params)
            else:
                raise EkUntrusted(
                    f"signature algorithm {self.view.signature_algorithm_oid.dotted_string} of "
                    f"certificate {self.label} is not supported"
                )
        except InvalidSignature:
            return False
        return True


def load_certificate(data: bytes) -> EkCertificate:
    """Parse one certificate from PEM (exactly one CERTIFICATE block) or DER bytes.

    Raises ``EkUntrusted`` saying why the bytes are not a usable certificate.
    """
    if not _looks_like_der(data):
        blocks = _pem_blocks(data)
        if len(blocks) != 1:
            raise EkUntrusted(f"expected one PEM certificate, found {len(blocks)}")
        return _from_der(blocks[0])
    return _from_der(data)


def load_certificates(data: bytes) -> tuple[EkCertificate, ...]:
    """Parse every certificate of a PEM file (one or more CERTIFICATE blocks), or one DER cert.

    Raises ``EkUntrusted`` for a PEM block that is not a CERTIFICATE (keys do not belong in a
    trust store) or any certificate that does not parse.
    """
    if not _looks_like_der(data):
        return tuple(_from_der(block) for block in _pem_blocks(data))
    return (_from_der(data),)


def _looks_like_der(data: bytes) -> bool:
    """DER certificates start with a SEQUENCE tag; anything else is read as PEM text.

    PEM files may carry text before the block (``openssl x509 -text`` output does).
    """
    return data[:1] == b"\x30"


def _pem_blocks(data: bytes) -> list[bytes]:
    blocks: list[bytes] = []
    for match in _PEM_BLOCK.finditer(data):
        label = match.group(1).decode("ascii")
        if label != "CERTIFICATE":
            raise EkUntrusted(f"PEM block '{label}' is not a CERTIFICATE")
        try:
            blocks.append(base64.b64decode(b"".join(match.group(2).split()), validate=True))
        except binascii.Error as e:
            raise EkUntrusted(f"PEM certificate #{len(blocks) + 1} is not valid base64") from e
    if not blocks:
        raise EkUntrusted(
            "neither DER (no leading SEQUENCE) nor PEM (no complete CERTIFICATE block)"
        )
    return blocks


def _from_der(raw: bytes) -> EkCertificate:
    """Parse with cryptography; re-encode to strict DER with pyasn1 only if cryptography refuses.

    Every field is read inside the ``try``: cryptography parses names and extensions lazily.
    """
    try:
        parts = split_certificate(raw)
    except ValueError as e:
        raise EkUntrusted(f"not an X.509 certificate: {e}") from e
    if parts.tbs_signature_algorithm != parts.signature_algorithm:
        raise EkUntrusted("tbsCertificate.signature differs from the outer signatureAlgorithm")
    if parts.serial <= 0:
        # RFC 5280 4.1.2.2; cryptography warns now and will refuse such certificates.
        raise EkUntrusted(f"serial number {parts.serial} is not positive")
    try:
        return _read_fields(raw, parts, x509.load_der_x509_certificate(raw), reencoded=False)
    except _PARSE_ERRORS:
        pass
    try:
        view = x509.load_der_x509_certificate(reencode_der(raw))
        return _read_fields(raw, parts, view, reencoded=True)
    except _PARSE_ERRORS as e:
        raise EkUntrusted(f"certificate does not parse, even re-encoded to DER: {e}") from e


def _read_fields(
    raw: bytes, parts: CertificateParts, view: x509.Certificate, *, reencoded: bool
) -> EkCertificate:
    extensions = view.extensions
    basic = _extension(extensions, x509.BasicConstraints)
    key_usage = _extension(extensions, x509.KeyUsage)
    ski = _extension(extensions, x509.SubjectKeyIdentifier)
    akid = _extension(extensions, x509.AuthorityKeyIdentifier)
    manufacturer, model, version = _tpm_identity(
        _extension(extensions, x509.SubjectAlternativeName)
    )
    return EkCertificate(
        raw=raw,
        view=view,
        reencoded=reencoded,
        tbs=parts.tbs,
        signature=parts.signature,
        fingerprint=hashlib.sha256(raw).digest(),
        subject=view.subject.rfc4514_string(),
        issuer=view.issuer.rfc4514_string(),
        serial=view.serial_number,
        not_before=view.not_valid_before_utc,
        not_after=view.not_valid_after_utc,
        is_ca=basic is not None and basic.ca,
        path_length=basic.path_length if basic is not None else None,
        key_cert_sign=key_usage is None or key_usage.key_cert_sign,
        subject_key_id=ski.digest if ski is not None else None,
        authority_key_id=akid.key_identifier if akid is not None else None,
        public_key=view.public_key(),
        tpm_manufacturer=manufacturer,
        tpm_model=model,
        tpm_version=version,
    )


def _extension(extensions: x509.Extensions, kind: type[_ExtT]) -> _ExtT | None:
    try:
        return extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _tpm_identity(
    san: x509.SubjectAlternativeName | None,
) -> tuple[str | None, str | None, str | None]:
    """TPM manufacturer, model and version from the SAN directoryName (TCG EK profile)."""
    if san is None:
        return None, None, None
    found: dict[x509.ObjectIdentifier, str] = {}
    for name in san.get_values_for_type(x509.DirectoryName):
        for oid in (TCG_AT_TPM_MANUFACTURER, TCG_AT_TPM_MODEL, TCG_AT_TPM_VERSION):
            for attribute in name.get_attributes_for_oid(oid):
                value = attribute.value
                found[oid] = value if isinstance(value, str) else value.hex()
    return (
        found.get(TCG_AT_TPM_MANUFACTURER),
        found.get(TCG_AT_TPM_MODEL),
        found.get(TCG_AT_TPM_VERSION),
    )
