"""The node's location evidence: a TPM-resident location key, and fixes signed with it.

1. ``ensure_location_key`` creates (or reuses) the location key in the TPM, an unrestricted ECC
   P-256 signing key that cannot leave it, and has the AK certify it (TPM2_Certify) with
   ``location_key_qualifying_data(agent_id, AK name)``. The result goes to the registrar: in the
   enrolment request (``EnrolRequest.location_key``), or later with
   ``PUT /v1/agents/<id>/location-key``, certified then over the nonce of a registrar challenge
   (``POST /v1/agents/<id>/location-key/challenge``).
2. ``LocationProvider`` reads a GNSS source in the background, keeps the recent fixes, and for a
   round's nonce signs the latest one: ``encode_evidence(LocationEvidence.from_fix(fix, ...))``
   (the fix with its vertical accuracy, the nonce, the kind of source it was read from, the
   receiver identity and the digest of the raw NMEA), signed in the TPM over its SHA-256
   (TPM2_Sign), as a TPMT_SIGNATURE.

A fix is signed at most once: a round that comes before the receiver's next fix waits for it a
little, then fails with ``GnssUnavailable`` (as does a source that fell silent), because the
verifier rejects a fix it has already seen (``location_frozen``).

The provider also screens the fix for a spoofer's signature, C/N0 equal across satellites, and
refuses to sign with ``LocationImplausible``. Location evidence (v2 on) carries the per-satellite
C/N0, so the verifier runs the same check itself (it does not take the node's word for it); the
screen here stays as defence in depth and so that a spoofed fix is never signed at all. The
altitude checks run on the verifier alone, from the signed fixes of its own track (v3).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import tpm
from agent.gnss.source import GnssSource
from agent.tpm_device import DEFAULT_AK_HANDLE, DEFAULT_LOCATION_KEY_HANDLE
from geoattest.errors import (
    ConfigurationError,
    GnssUnavailable,
    LocationImplausible,
    LocationKeyInvalid,
)
from geoattest.wire import LocationKeyWire, location_key_qualifying_data
from geofence import (
    EpochAssembler,
    Fix,
    LocationEvidence,
    LocationPolicy,
    LocationReason,
    NmeaParser,
    ParseStats,
    SourceKind,
    check_fix,
    encode_evidence,
    evidence_digest,
)

__all__ = [
    "DigestSigner",
    "LocationKeyTpm",
    "LocationProvider",
    "SignedLocation",
    "ensure_location_key",
]

log = logging.getLogger(__name__)

AGENT_SCREENS = frozenset({LocationReason.CN0_UNIFORM})
"""Plausibility reasons the agent itself refuses to sign (the verifier checks them too)."""
_DEFAULT_SCREEN_POLICY = LocationPolicy()


class DigestSigner(Protocol):
    """TPM2_Sign with a persistent key (``agent.tpm_device.TpmDevice`` provides it)."""

    def sign_digest(self, key_handle: int, digest: bytes) -> bytes: ...


class LocationKeyTpm(Protocol):
    """What ``ensure_location_key`` needs from a TPM (``TpmDevice`` provides it)."""

    def create_location_key(self, handle: int = ...) -> bytes: ...

    def read_public(self, handle: int) -> bytes: ...

    def certify(
        self, key_handle: int, qualifying_data: bytes, *, ak_handle: int = ...
    ) -> tuple[bytes, bytes]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedLocation:
    """Canonical location evidence, its TPMT_SIGNATURE by the location key, and the fix."""

    evidence: bytes
    signature: bytes
    fix: Fix


def ensure_location_key(
    device: LocationKeyTpm,
    *,
    handle: int = DEFAULT_LOCATION_KEY_HANDLE,
    ak_handle: int = DEFAULT_AK_HANDLE,
    agent_id: str,
    nonce: bytes | None = None,
) -> LocationKeyWire:
    """The location key at ``handle`` (created if absent) with a fresh TPM2_Certify by the AK,
    over ``nonce`` when it answers a registrar challenge (registration after enrolment).

    Raises ConfigurationError when ``handle`` holds a key unfit for location evidence (it is
    never evicted) or there is no AK at ``ak_handle``; TpmUnavailable/TpmCommandFailed from the TPM.
    """
    public = device.create_location_key(handle)
    try:
        tpm.check_location_key_attributes(tpm.parse_tpm2b_public(public))
    except LocationKeyInvalid as e:
        raise ConfigurationError(
            f"persistent handle {handle:#x} holds no usable location key: {e.message}; "
            "evict it (tpm2_evictcontrol) or configure another handle"
        ) from e
    ak_name = tpm.parse_tpm2b_public(device.read_public(ak_handle)).name
    attest, signature = device.certify(
        handle, location_key_qualifying_data(agent_id, ak_name, nonce), ak_handle=ak_handle
    )
    return LocationKeyWire(
        public=public,
        certify_attest=attest,
        certify_signature=signature,
        nonce=nonce.hex() if nonce is not None else None,
    )


class LocationProvider:
    """Keeps the recent fixes of a GNSS source and signs the latest one for a round's nonce.

    ``feed`` takes raw NMEA lines (``start`` runs a daemon thread feeding it from ``source``).
    ``device`` signs with the key at ``key_handle``; ``signed_location`` may be given the device
    per call instead (the evidence service holds the one TPM connection under its lock).
    ``max_fix_age_s`` bounds how old (agent clock, at epoch close) the latest fix may be;
    ``wait_for_fix_s`` is how long a round waits for a fix it has not yet signed.
    ``source_kind`` is what the evidence says the fixes were read from: ``source.kind`` by
    default; give it when lines are fed by hand (``source`` None). Raises ConfigurationError
    when neither says.
    """

    def __init__(
        self,
        source: GnssSource | None,
        device: DigestSigner | None,
        key_handle: int = DEFAULT_LOCATION_KEY_HANDLE,
        *,
        track_length: int = 32,
        max_fix_age_s: float = 5.0,
        wait_for_fix_s: float = 2.0,
        screen_policy: LocationPolicy = _DEFAULT_SCREEN_POLICY,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        source_kind: SourceKind | None = None,
    ) -> None:
        kind = source_kind or (source.kind if source is not None else None)
        if kind is None:
            raise ConfigurationError("LocationProvider without a source needs its source_kind")
        self.source_kind = SourceKind(kind)
        self._source, self._device, self._key_handle = source, device, key_handle
        self._max_age = timedelta(seconds=max_fix_age_s)
        self._wait_s = wait_for_fix_s
        self._screen_policy, self._clock = screen_policy, clock
        self._parser = NmeaParser()
        self._assembler = EpochAssembler()
        self._track: collections.deque[Fix] = collections.deque(maxlen=track_length)
        self._signed_digest: bytes | None = None
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._error: GnssUnavailable | None = None

    # --- fixes in -------------------------------------------------------------------------------

    def feed(self, line: bytes | str) -> Fix | None:
        """Parse one NMEA line; returns the fix of the epoch it closed (stamped ``received_at``)."""
        with self._changed:
            sentence = self._parser.parse(line)
            fix = self._assembler.feed(sentence) if sentence is not None else None
            if fix is not None:
                fix = dataclasses.replace(fix, received_at=self._clock())
                self._track.append(fix)
                self._changed.notify_all()
            return fix

    def start(self) -> None:
        """Read ``source`` in a daemon thread until it ends or ``close`` is called."""
        if self._source is None:
            raise ConfigurationError("LocationProvider has no GNSS source to start")
        if self._thread is None:
            self._thread = threading.Thread(target=self._read, name="gnss-reader", daemon=True)
            self._thread.start()

    def _read(self) -> None:
        assert self._source is not None  # noqa: S101 - checked by start()
        try:
            for line in self._source.lines():
                self.feed(line)
        except GnssUnavailable as e:
            log.warning("GNSS source failed: %s", e.message)
            with self._changed:
                self._error = e
                self._changed.notify_all()

    def close(self) -> None:
        """Stop reading the source (idempotent)."""
        if self._source is not None:
            self._source.close()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=2.0)

    def track(self) -> tuple[Fix, ...]:
        """The recent fixes, oldest first."""
        with self._changed:
            return tuple(self._track)

    def stats(self) -> ParseStats:
        """NMEA parse statistics so far (rejected sentences are counted here)."""
        with self._changed:
            return self._parser.stats()

    # --- evidence out ---------------------------------------------------------------------------

    def signed_location(
        self, nonce: bytes, *, device: DigestSigner | None = None
    ) -> SignedLocation:
        """Sign the latest fix (not signed before) as evidence answering ``nonce``.

        Raises GnssUnavailable (no fresh unsigned fix within ``wait_for_fix_s``, or the source
        failed), LocationImplausible (the agent's own spoofing screen), LocationEvidenceInvalid (the
        fix has no date), ConfigurationError (no device), and the TPM's errors.
        """
        signer = device or self._device
        if signer is None:
            raise ConfigurationError("LocationProvider has no TPM to sign location evidence with")
        fix, earlier = self._next_fix()
        self._screen(fix, earlier)
        evidence = LocationEvidence.from_fix(fix, nonce=nonce, source=self.source_kind)
        encoded = encode_evidence(evidence)
        signature = signer.sign_digest(self._key_handle, evidence_digest(encoded))
        with self._changed:
            self._signed_digest = fix.nmea_digest
        return SignedLocation(evidence=encoded, signature=signature, fix=fix)

    def _next_fix(self) -> tuple[Fix, tuple[Fix, ...]]:
        with self._changed:
            self._changed.wait_for(self._fresh_or_failed, timeout=self._wait_s)
            if self._error is not None:
                raise GnssUnavailable(f"GNSS source failed: {self._error.message}")
            if not self._track:
                raise GnssUnavailable("no GNSS fix yet")
            fix = self._track[-1]
            if fix.nmea_digest == self._signed_digest:
                raise GnssUnavailable(f"no new GNSS fix within {self._wait_s} s")
            assert fix.received_at is not None  # noqa: S101 - every tracked fix is stamped
            age = self._clock() - fix.received_at
            if age > self._max_age:
                raise GnssUnavailable(f"latest GNSS fix is {age.total_seconds():.1f} s old")
            return fix, tuple(self._track)[:-1]

    def _fresh_or_failed(self) -> bool:
        return self._error is not None or (
            bool(self._track) and self._track[-1].nmea_digest != self._signed_digest
        )

    def _screen(self, fix: Fix, earlier: tuple[Fix, ...]) -> None:
        now = fix.utc or self._clock()  # only the screened checks count; they ignore the clock
        result = check_fix(fix, earlier, self._screen_policy, now)
        hits = [f for f in result.failures if f.reason_code in AGENT_SCREENS]
        if hits:
            raise LocationImplausible(
                f"refusing to sign location evidence: {hits[0].message}",
                reason=hits[0].reason_code.value,
            )
