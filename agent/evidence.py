"""One round's attestation evidence: a TPM quote over the nonce, the PCRs it covers, and the IMA
entries after the verifier's offset.

Order matters. The quote is taken first, the IMA lines are read after it: every measurement that
PCR 10 reflects at quote time is already in the log, so the verifier's replay can always reach
the quoted PCR 10 (entries appended after the quote just show up again next round).

The quote's extraData is ``quote_qualifying_data(nonce, location evidence)``. When the request
asks for location, the evidence is signed first (by ``agent.location.LocationProvider``, with the
TPM connection held under the same lock) so the quote that follows binds its digest.

When the request asks for the boot event log (``include_boot_log``), the agent sends the TCG
``binary_bios_measurements`` file as it is, read after the quote like the IMA lines. The agent
does not judge it: without a readable log the answer simply has none, and the verifier's policy
decides whether that fails the round.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from agent.ima_source import MeasurementList
from agent.location import DigestSigner, SignedLocation
from agent.tpm_device import TpmQuote
from geoattest.errors import GnssUnavailable, MalformedRequest, TpmUnavailable
from geoattest.pcr_banks import PcrBank
from geoattest.wire import (
    MAX_BOOT_LOG_BYTES,
    EvidenceRequest,
    EvidenceResponse,
    ImaWire,
    QuoteWire,
    quote_qualifying_data,
)

__all__ = [
    "BootLog",
    "BootLogFile",
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
        self, nonce: bytes, pcrs: Mapping[PcrBank, Sequence[int]], *, ak_handle: int = ...
    ) -> TpmQuote: ...

    def sign_digest(self, key_handle: int, digest: bytes) -> bytes: ...

    def close(self) -> None: ...


class LocationProvider(Protocol):
    """Fresh signed location evidence for a round's nonce (``agent.location.LocationProvider``),
    signed with ``device`` (the connection the round already holds) when given."""

    def signed_location(
        self, nonce: bytes, *, device: DigestSigner | None = None
    ) -> SignedLocation: ...


class BootLog(Protocol):
    """Where evidence collection gets the boot event log from (a file here, memory in tests)."""

    def read(self) -> bytes | None:
        """The whole log, or None when this node has none to give."""
        ...


class BootLogFile:
    """The TCG event log file (``/sys/kernel/security/tpm0/binary_bios_measurements``).

    ``read`` returns None, and logs why once (until a read succeeds again), when the file is
    missing, unreadable or larger than ``max_bytes``: the verifier's policy decides what a
    missing log means. The file is read in full on every call (securityfs reports size 0).
    """

    def __init__(self, path: Path, *, max_bytes: int = MAX_BOOT_LOG_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._warned = False
        self._lock = threading.Lock()

    def read(self) -> bytes | None:
        try:
            with self.path.open("rb") as f:
                data = f.read(self.max_bytes + 1)
        except OSError as e:
            self._warn_once("cannot read the boot event log %s: %s", self.path, e)
            return None
        if len(data) > self.max_bytes:
            self._warn_once(
                "boot event log %s is larger than %s bytes; not sent", self.path, self.max_bytes
            )
            return None
        with self._lock:
            self._warned = False
        return data

    def _warn_once(self, message: str, *args: object) -> None:
        with self._lock:
            if self._warned:
                return
            self._warned = True
        log.warning(message, *args)


def collect_evidence(
    device: QuotingTpm,
    ima: MeasurementList,
    request: EvidenceRequest,
    *,
    ak_handle: int,
    location: LocationProvider | None = None,
    boot_log: BootLog | None = None,
) -> EvidenceResponse:
    """Quote ``request.pcrs`` with extraData bound to the nonce (and location evidence when
    asked for), then read the IMA entries from ``request.ima_offset`` and, when asked for, the
    boot event log (none in the answer when ``boot_log`` is None or has nothing).

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
    boot_log_data = boot_log.read() if request.include_boot_log and boot_log else None
    return EvidenceResponse(
        quote=QuoteWire(attest=quoted.attest, signature=quoted.signature),
        pcrs={
            bank: {str(index): digest.hex() for index, digest in sorted(values.items())}
            for bank, values in quoted.pcrs.items()
        },
        ima=ImaWire.from_entries(ima_lines.offset, ima_lines.lines),
        location=signed.evidence if signed else None,
        location_signature=signed.signature if signed else None,
        boot_log=boot_log_data,
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
        boot_log: BootLog | None = None,
    ) -> None:
        self._open_device = open_device
        self._ima = ima
        self._boot_log = boot_log
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
                    boot_log=self._boot_log,
                )
            except TpmUnavailable:
                log.warning("TPM unavailable; reconnecting on the next request")
                self._drop_device()
                raise
            finally:
                if not self._hold:
                    self._drop_device()

    def quote(self, nonce: bytes, pcrs: Mapping[PcrBank, Sequence[int]]) -> TpmQuote:
        """A quote with the AK over ``pcrs`` and ``nonce`` (a token session's binding), under
        the same lock and reconnection rules as evidence."""
        with self._lock:
            if self._device is None:
                self._device = self._open_device()
            try:
                return self._device.quote(nonce, pcrs, ak_handle=self._ak_handle)
            except TpmUnavailable:
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
