"""One round's attestation evidence: a TPM quote over the nonce, the PCRs it covers, and the IMA
entries after the verifier's offset.

Order matters. The quote is taken first, the IMA lines are read after it: every measurement that
PCR 10 reflects at quote time is already in the log, so the verifier's replay can always reach
the quoted PCR 10 (entries appended after the quote just show up again next round).

The quote's extraData is ``quote_qualifying_data(nonce, location evidence)``. When the request
asks for location, the evidence is signed first (by ``agent.location.LocationProvider``, with the
TPM connection held under the same lock) so the quote that follows binds its digest.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from agent.ima_source import MeasurementList
from agent.location import DigestSigner, SignedLocation
from agent.tpm_device import TpmQuote
from geoattest.errors import GnssUnavailable, MalformedRequest, TpmUnavailable
from geoattest.wire import (
    EvidenceRequest,
    EvidenceResponse,
    ImaWire,
    QuoteWire,
    quote_qualifying_data,
)

__all__ = [
    "EvidenceService",
    "LocationProvider",
    "QuotingTpm",
    "SignedLocation",
    "collect_evidence",
]

log = logging.getLogger(__name__)


class QuotingTpm(Protocol):
    """What evidence collection needs from a TPM (``agent.tpm_device.TpmDevice`` provides it)."""

    def quote(
        self, nonce: bytes, pcrs: Mapping[str, Sequence[int]], *, ak_handle: int = ...
    ) -> TpmQuote: ...

    def sign_digest(self, key_handle: int, digest: bytes) -> bytes: ...

    def close(self) -> None: ...


class LocationProvider(Protocol):
    """Fresh signed location evidence for a round's nonce (``agent.location.LocationProvider``),
    signed with ``device`` (the connection the round already holds) when given."""

    def signed_location(
        self, nonce: bytes, *, device: DigestSigner | None = None
    ) -> SignedLocation: ...


def collect_evidence(
    device: QuotingTpm,
    ima: MeasurementList,
    request: EvidenceRequest,
    *,
    ak_handle: int,
    location: LocationProvider | None = None,
) -> EvidenceResponse:
    """Quote ``request.pcrs`` with extraData bound to the nonce (and location evidence when
    asked for), then read the IMA entries from ``request.ima_offset``.

    The caller serialises TPM access (see ``EvidenceService``). Raises MalformedRequest for a
    nonce that is not hex, GnssUnavailable when location is asked for and there is no source or
    no fresh fix, LocationImplausible when the agent's own spoofing screen refuses the fix, and
    the TPM's errors (TpmUnavailable, TpmCommandFailed, ConfigurationError for an inactive
    bank or a missing AK).
    """
    try:
        nonce = bytes.fromhex(request.nonce)
    except ValueError as e:  # the wire pattern allows an odd number of hex digits
        raise MalformedRequest(f"nonce is not an even number of hex digits: {e}") from e
    signed = _location_for(request, location, nonce, device)
    extra_data = quote_qualifying_data(nonce, signed.evidence if signed else None)
    quoted = device.quote(extra_data, request.pcrs, ak_handle=ak_handle)
    ima_lines = ima.read_from(request.ima_offset)
    return EvidenceResponse(
        quote=QuoteWire(attest=quoted.attest, signature=quoted.signature),
        pcrs={
            bank: {str(index): digest.hex() for index, digest in sorted(values.items())}
            for bank, values in quoted.pcrs.items()
        },
        ima=ImaWire(offset=ima_lines.offset, lines=ima_lines.lines),
        location=signed.evidence if signed else None,
        location_signature=signed.signature if signed else None,
    )


def _location_for(
    request: EvidenceRequest,
    location: LocationProvider | None,
    nonce: bytes,
    device: QuotingTpm,
) -> SignedLocation | None:
    if not request.include_location:
        return None
    if location is None:
        raise GnssUnavailable("location evidence was asked for; this agent has no location source")
    return location.signed_location(nonce, device=device)


class EvidenceService:
    """Evidence for concurrent API requests over one TPM connection.

    swtpm (and a TPM without a resource manager) serves one connection at a time, so a lock
    serialises every collection. The device is opened lazily with ``open_device`` and dropped
    when it becomes unavailable (swtpm restarted, transport broken): the request fails with
    TpmUnavailable (503) and the next one reconnects. With ``hold_connection=False`` the
    connection is closed after every collection, leaving a single-connection TPM (swtpm) free
    for other local users between rounds (the test harness's IMA emulator, tpm2-tools).
    """

    def __init__(
        self,
        open_device: Callable[[], QuotingTpm],
        ima: MeasurementList,
        *,
        ak_handle: int,
        location: LocationProvider | None = None,
        hold_connection: bool = True,
    ) -> None:
        self._open_device = open_device
        self._ima = ima
        self._ak_handle = ak_handle
        self._location = location
        self._hold = hold_connection
        self._lock = threading.Lock()
        self._device: QuotingTpm | None = None

    def collect(self, request: EvidenceRequest) -> EvidenceResponse:
        """``collect_evidence`` under the TPM lock, reconnecting after a TPM outage."""
        with self._lock:
            if self._device is None:
                self._device = self._open_device()
            try:
                return collect_evidence(
                    self._device,
                    self._ima,
                    request,
                    ak_handle=self._ak_handle,
                    location=self._location,
                )
            except TpmUnavailable:
                log.warning("TPM unavailable; reconnecting on the next request")
                self._drop_device()
                raise
            finally:
                if not self._hold:
                    self._drop_device()

    def close(self) -> None:
        """Close the TPM connection (idempotent)."""
        with self._lock:
            self._drop_device()

    def _drop_device(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            device.close()
