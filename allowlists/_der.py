"""A minimal DER TLV walk that splits an X.509 certificate into its signed parts.

The signature of a certificate covers the *original* bytes of ``tbsCertificate``. When a real EK
certificate is not strict DER (keylime issue #1775: Nuvoton's multi-valued RDN SETs are out of
order), every parser that re-encodes it changes those bytes and the signature no longer verifies.
So we cut the three top-level parts out of the original encoding here, without interpreting
them, and verify signatures over exactly those bytes.

Only definite lengths are accepted (BER indefinite lengths are not DER and no real EK
certificate uses them). Errors are ``ValueError`` with a precise reason; ``certs.py`` turns
them into the public error.
"""

from __future__ import annotations

from dataclasses import dataclass

_SEQUENCE = 0x30
_BIT_STRING = 0x03
_INTEGER = 0x02
_CONTEXT_0 = 0xA0
_MAX_LENGTH_OCTETS = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateParts:
    """The original encodings of the parts of ``Certificate ::= SEQUENCE { tbs, alg, sig }``."""

    tbs: bytes
    """The complete ``tbsCertificate`` TLV, as signed."""
    signature_algorithm: bytes
    """The complete outer ``signatureAlgorithm`` TLV."""
    tbs_signature_algorithm: bytes
    """The ``signature`` AlgorithmIdentifier TLV inside ``tbsCertificate``."""
    signature: bytes
    """The signature value: the BIT STRING content without its unused-bits octet."""
    serial: int
    """tbsCertificate.serialNumber, as a signed integer."""


def _read_tlv(data: bytes, offset: int, end: int) -> tuple[int, int, int]:
    """Read one TLV at ``offset``: returns (tag, start of content, end of content)."""
    if offset + 2 > end:
        raise ValueError(f"truncated TLV header at offset {offset}")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise ValueError(f"multi-byte tag at offset {offset} is not expected in a certificate")
    first = data[offset + 1]
    pos = offset + 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise ValueError(f"indefinite length at offset {offset} is not DER")
    else:
        count = first & 0x7F
        if count > _MAX_LENGTH_OCTETS:
            raise ValueError(f"length of {count} octets at offset {offset} is too large")
        if pos + count > end:
            raise ValueError(f"truncated length at offset {offset}")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > end:
        raise ValueError(f"TLV at offset {offset} claims {length} bytes, only {end - pos} are left")
    return tag, pos, pos + length


def _expect(data: bytes, offset: int, end: int, tag: int, what: str) -> tuple[int, int]:
    found, start, stop = _read_tlv(data, offset, end)
    if found != tag:
        raise ValueError(f"{what}: expected tag 0x{tag:02x}, found 0x{found:02x}")
    return start, stop


def split_certificate(data: bytes) -> CertificateParts:
    """Split DER (or non-strict DER) certificate bytes into their original signed parts.

    Checks the outer shape only: a SEQUENCE spanning all input holding a SEQUENCE (tbs), a
    SEQUENCE (signature algorithm) and a BIT STRING with no unused bits, nothing after it.
    Raises ``ValueError`` saying what is wrong.
    """
    start, end = _expect(data, 0, len(data), _SEQUENCE, "Certificate")
    if end != len(data):
        raise ValueError(f"{len(data) - end} bytes of trailing data after the certificate")

    tbs_start, tbs_end = _expect(data, start, end, _SEQUENCE, "tbsCertificate")
    tbs_offset = start
    alg_offset = tbs_end
    _, alg_end = _expect(data, alg_offset, end, _SEQUENCE, "signatureAlgorithm")
    sig_start, sig_end = _expect(data, alg_end, end, _BIT_STRING, "signatureValue")
    if sig_end != end:
        raise ValueError("unexpected data after signatureValue")
    if sig_start == sig_end or data[sig_start] != 0:
        raise ValueError("signatureValue BIT STRING must have zero unused bits")

    # Inside tbsCertificate: [0] version (optional), serialNumber INTEGER, signature AlgId.
    pos = tbs_start
    tag, _, stop = _read_tlv(data, pos, tbs_end)
    if tag == _CONTEXT_0:
        pos = stop
    serial_start, stop = _expect(data, pos, tbs_end, _INTEGER, "tbsCertificate.serialNumber")
    if serial_start == stop:
        raise ValueError("tbsCertificate.serialNumber is empty")
    serial = int.from_bytes(data[serial_start:stop], "big", signed=True)
    inner_start = stop
    _, inner_end = _expect(data, inner_start, tbs_end, _SEQUENCE, "tbsCertificate.signature")

    return CertificateParts(
        tbs=data[tbs_offset:tbs_end],
        signature_algorithm=data[alg_offset:alg_end],
        tbs_signature_algorithm=data[inner_start:inner_end],
        signature=data[sig_start + 1 : sig_end],
        serial=serial,
    )
