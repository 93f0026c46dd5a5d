"""Re-encode a non-strict-DER certificate to strict DER with pyasn1, so cryptography can read it.

Used only to obtain *field values* (names, validity, extensions, key) of certificates that
python-cryptography refuses, such as Nuvoton EK certificates whose multi-valued RDN SETs are out
of order (keylime issue #1775). The re-encoded bytes are never used for signature checks or
fingerprints: those use the original bytes (see ``_der.py``).

Extension values are OCTET STRINGs holding their own DER, which the certificate-level re-encode
does not touch; known extensions (RFC 5280 map: SAN, basic constraints, ...) are re-encoded too,
since Nuvoton's SAN directoryName has the same SET-ordering problem.
"""

from __future__ import annotations

from pyasn1.codec.der import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1_modules import rfc5280


def reencode_der(data: bytes) -> bytes:
    """Return strict DER for a BER/non-strict-DER certificate.

    Raises ``ValueError`` when pyasn1 cannot decode the bytes as an RFC 5280 Certificate.
    """
    try:
        cert, rest = decoder.decode(data, asn1Spec=rfc5280.Certificate())
        if rest:
            raise ValueError(f"{len(rest)} bytes of trailing data after the certificate")
        extensions = cert["tbsCertificate"]["extensions"]
        if extensions.isValue:
            for extension in extensions:
                spec = rfc5280.certificateExtensionsMap.get(extension["extnID"])
                if spec is None:
                    continue
                value, rest = decoder.decode(bytes(extension["extnValue"]), asn1Spec=spec)
                if rest:
                    raise ValueError(f"trailing data in extension {extension['extnID']}")
                extension["extnValue"] = encoder.encode(value)
        encoded = encoder.encode(cert)
    except PyAsn1Error as e:
        raise ValueError(f"not an RFC 5280 certificate ({type(e).__name__}: {e})") from e
    return bytes(encoded)
