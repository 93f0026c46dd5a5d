"""The typed GNSS fix that one NMEA epoch yields, and how its horizontal accuracy is estimated.

Horizontal accuracy (``Fix.horizontal_accuracy_m``) is a **2DRMS radius** (about 95-98 % of
horizontal errors fall inside it), and the zone decision uses it as the radius of the accuracy
disc:

* ``AccuracySource.GST``: the receiver's own error estimate from ``$--GST``:
  ``2 * sqrt(sigma_lat**2 + sigma_lon**2)``.
* ``AccuracySource.HDOP``: no GST, so ``2 * HDOP * UERE`` with a user-equivalent range error of
  ``DEFAULT_UERE_M`` = 5 m (1 sigma), the usual single-frequency budget: GPS signal-in-space
  URE alone is specified at <= 7.8 m 95 % (GPS SPS Performance Standard), ionosphere, troposphere,
  multipath and receiver noise add to it. DRMS = HDOP x UERE is the textbook relation.
* ``AccuracySource.NONE``: neither GST nor HDOP; no accuracy, which plausibility rejects.

``Fix.vertical_accuracy_m`` is the same for height: ``2 * sigma_alt`` (GST) or ``2 * VDOP * UERE``.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_UERE_M = 5.0
KNOTS_TO_MPS = 1852.0 / 3600.0

# NMEA talker → constellation; GN (combined) talkers name the system through GSA's system id.
CONSTELLATIONS = {
    "GP": "GPS",
    "GL": "GLONASS",
    "GA": "Galileo",
    "GB": "BeiDou",
    "BD": "BeiDou",
    "GQ": "QZSS",
    "QZ": "QZSS",
    "GI": "NavIC",
    "GN": "GNSS",
}
SYSTEM_IDS = {1: "GPS", 2: "GLONASS", 3: "Galileo", 4: "BeiDou", 5: "QZSS", 6: "NavIC"}


class AccuracySource(enum.StrEnum):
    GST = "gst"
    HDOP = "hdop"
    NONE = "none"


@dataclass(frozen=True, slots=True, kw_only=True)
class SatelliteSignal:
    """One satellite in view as GSV reports it; ``cn0_dbhz`` is None when not tracked."""

    constellation: str
    prn: int
    signal_id: str | None
    elevation_deg: float | None
    azimuth_deg: float | None
    cn0_dbhz: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiverIdentity:
    """What the receiver says about itself ($--TXT banners, $PSTMVER), in order of first sight."""

    texts: tuple[str, ...]

    def __str__(self) -> str:
        return " | ".join(self.texts)


@dataclass(frozen=True, slots=True, kw_only=True)
class Fix:
    """One epoch's position solution with everything the plausibility checks need.

    ``utc`` is None when the receiver sent no usable date (e.g. a week-rollover date such as
    ``2208-1``); ``time_of_day`` is always set. ``quality`` is GGA's fix quality, ``rmc_status``
    and ``rmc_mode`` come from RMC, ``gns_mode`` from GNS (one letter per constellation).
    ``nmea_digest`` is :func:`nmea_digest` over the epoch's accepted sentences.
    """

    utc: dt.datetime | None
    time_of_day: dt.time
    latitude: float
    longitude: float
    altitude_m: float | None
    quality: int | None
    rmc_status: str | None
    rmc_mode: str | None
    gns_mode: str | None
    fix_type: int | None
    satellites_used: int | None
    satellites_in_view: int | None
    hdop: float | None
    pdop: float | None
    vdop: float | None
    horizontal_accuracy_m: float | None
    accuracy_source: AccuracySource
    vertical_accuracy_m: float | None
    speed_mps: float | None
    course_deg: float | None
    signals: tuple[SatelliteSignal, ...]
    receiver: ReceiverIdentity | None
    nmea_digest: bytes
    sentence_count: int
    received_at: dt.datetime | None = None

    def cn0_values(self) -> list[float]:
        """Strongest C/N0 per satellite (a satellite seen on several signals counts once)."""
        best: dict[tuple[str, int], float] = {}
        for s in self.signals:
            if s.cn0_dbhz is not None:
                key = (s.constellation, s.prn)
                best[key] = max(best.get(key, s.cn0_dbhz), s.cn0_dbhz)
        return list(best.values())


def horizontal_accuracy(
    *,
    sigma_lat_m: float | None,
    sigma_lon_m: float | None,
    hdop: float | None,
    uere_m: float = DEFAULT_UERE_M,
) -> tuple[float | None, AccuracySource]:
    """The 2DRMS accuracy radius in metres and where it came from (see the module docstring)."""
    if sigma_lat_m is not None and sigma_lon_m is not None:
        return 2.0 * math.hypot(sigma_lat_m, sigma_lon_m), AccuracySource.GST
    if hdop is not None and hdop > 0:
        return 2.0 * hdop * uere_m, AccuracySource.HDOP
    return None, AccuracySource.NONE


def vertical_accuracy(
    *, sigma_alt_m: float | None, vdop: float | None, uere_m: float = DEFAULT_UERE_M
) -> float | None:
    """The 2-sigma vertical accuracy in metres: ``2 * sigma_alt`` (GST), else 2 * VDOP * UERE."""
    if sigma_alt_m is not None:
        return 2.0 * sigma_alt_m
    if vdop is not None and vdop > 0:
        return 2.0 * vdop * uere_m
    return None


def nmea_digest(sentences: Iterable[str]) -> bytes:
    """SHA-256 over the sentences, each as sent (``$`` to checksum, no line ending) plus ``\\n``.

    A verifier holding the raw lines recomputes it byte for byte; it binds a fix to its NMEA.
    """
    h = hashlib.sha256()
    for s in sentences:
        h.update(s.encode("ascii"))
        h.update(b"\n")
    return h.digest()
