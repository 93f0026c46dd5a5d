"""The EK admission decision of the registrar: chain to an allowlisted CA, then pin.

``check_ek`` is the one call the registrar makes for an enrolling agent's EK certificate. It
combines ``ek_trust`` (is the TPM genuine?) and ``pins`` (is it one we bought?), in that order,
so an EK that is both untrusted and unpinned is reported as untrusted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from allowlists.certs import EkCertificate
from allowlists.ek_trust import EkChain, EkTrustStore, validate_ek_certificate
from allowlists.pins import Pin, PinSet


@dataclass(frozen=True, slots=True, kw_only=True)
class EkVerdict:
    """An admitted EK: its certificate, the validated chain and the matching pin, if pinned."""

    certificate: EkCertificate
    chain: EkChain
    pin: Pin | None
    """None when pins are not configured."""


def check_ek(
    cert: EkCertificate | bytes,
    *,
    store: EkTrustStore,
    pins: PinSet | None,
    now: datetime,
    intermediates: Sequence[bytes] = (),
) -> EkVerdict:
    """Admit an EK certificate (parsed, or PEM/DER bytes) or raise.

    Raises ``EkUntrusted`` when the certificate does not parse or does not chain to ``store``
    at ``now`` (see ``validate_ek_certificate``), then ``EkNotPinned`` when ``pins`` is
    configured (non-empty) and no pin names the certificate.
    """
    chain = validate_ek_certificate(cert, store, now=now, intermediates=intermediates)
    pin = pins.match(chain.leaf) if pins is not None and pins.configured else None
    return EkVerdict(certificate=chain.leaf, chain=chain, pin=pin)
