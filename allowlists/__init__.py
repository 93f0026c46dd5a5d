"""Pure allowlists: EK trust anchors and purchase-order pins (IMA policy and boot PCRs to come).

No I/O here: callers pass bytes, text and ``now``; ``geoattest.trust_files`` reads directories.
"""

from allowlists.certs import EkCertificate, load_certificate, load_certificates
from allowlists.ek_policy import EkVerdict, check_ek
from allowlists.ek_trust import (
    MAX_CHAIN_LENGTH,
    MAX_INTERMEDIATES,
    EkChain,
    EkTrustStore,
    validate_ek_certificate,
)
from allowlists.pins import Pin, PinSet, parse_pins

__all__ = [
    "MAX_CHAIN_LENGTH",
    "MAX_INTERMEDIATES",
    "EkCertificate",
    "EkChain",
    "EkTrustStore",
    "EkVerdict",
    "Pin",
    "PinSet",
    "check_ek",
    "load_certificate",
    "load_certificates",
    "parse_pins",
    "validate_ek_certificate",
]
