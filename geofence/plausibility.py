"""Plausibility and spoofing checks on a fix and on the recent track.

Every check has a stable reason code (:class:`LocationReason`) and a threshold in
:class:`LocationPolicy`. The defaults and their sources (longer: ``docs/location-policy.md``):

* Fix quality/mode: GGA quality 6 (estimated/dead reckoning), 7 (manual input), 8 (simulator) and
  RMC/GNS mode E/M/S are not measurements (NMEA 0183 v4.10 field definitions); RMC status must
  be ``A``. The Garmin capture in demo mode (quality 8, mode S) is the real-world case.
* ``min_satellites`` = 5: four solve a 3D position, a fifth is the minimum for RAIM fault
  detection (one redundant range), so a spoofer cannot fit every range trivially.
* ``max_hdop`` = 5.0: above 5 the geometry is "moderate" to "poor" in the usual DOP rating
  table (1 ideal, 1-2 excellent, 2-5 good, 5-10 moderate); accuracy then is too coarse to fence.
* ``max_time_skew_s`` = 5 s: receiver UTC vs the agent's NTP-synced clock; GNSS time is good to
  well under 1 µs, so seconds of skew mean a wrong clock, a replay or a week-rollover bug.
* ``max_fix_age_s`` = 30 s: a fix older than this at verification time is stale (rounds run
  every few seconds to a minute).
* ``max_speed_mps`` = 90 m/s (324 km/h): above any road or rail vehicle of an edge fleet (set
  higher for aircraft). Distances are WGS84 geodesics; both fixes' accuracy radii are allowed.
* Altitude in [-500, 9000] m MSL: the lowest land (Dead Sea shore, about -430 m) and highest
  (Everest, 8849 m) with a margin; and between consecutive fixes a height change of at most
  ``max_vertical_speed_mps`` = 10 m/s times the elapsed time plus both fixes' vertical 2-sigma
  accuracies (a 15 % grade at 30 m/s climbs 4.5 m/s). This catches the Quectel cold-start fix at
  -249.9 m MSL near sea level (200 m below the previous fix 9 s earlier, VDOP 3.3).
* Frozen: the same raw NMEA digest or the same receiver time as an earlier fix (a replay), or
  ``frozen_repeats`` = 3 fixes with bit-identical position *and* C/N0 set (real static receivers
  keep the position but their C/N0 fluctuates).
* C/N0 uniformity: standard deviation below ``cn0_min_stddev_db`` = 1.0 dB-Hz over at least
  ``cn0_min_satellites`` = 6 satellites. Authentic signals spread with elevation and antenna
  gain; a simulator or single-antenna spoofer often transmits all at one power (Psiaki &
  Humphreys, "GNSS Spoofing and Detection", Proc. IEEE 104(6), 2016). The real captures in
  ``tests/vectors/nmea`` range from 2.0 to 9.8 dB-Hz.
* Clock jump: receiver time going backwards between fixes, or (when the agent stamped
  ``received_at``) receiver time and agent time advancing by more than ``max_clock_drift_s`` = 2 s
  apart.
* Source: ``accepted_sources`` = ``serial`` and ``gpsd``: a fix replayed from a ``file`` is a
  test or a demo, never a receiver, so production refuses it unless a policy names ``file``
  (the local dev fleet and the tests that replay captures do). The kind comes from the agent's
  configuration and is signed with the evidence (v3): it catches a node set up for a demo, not
  a node whose agent lies. Checked by ``verifier.core.location`` on the evidence, which carries
  the kind; ``check_fix`` itself does not see it.
"""

from __future__ import annotations

import datetime as dt
import enum
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

from pyproj import Geod

from geoattest.errors import LocationImplausible, LocationStale, PolicyInvalid
from geofence.evidence import SourceKind
from geofence.fix import Fix

_GEOD = Geod(ellps="WGS84")


class LocationReason(enum.StrEnum):
    FIX_QUALITY = "location_fix_quality"
    TOO_FEW_SATELLITES = "location_too_few_satellites"
    HDOP = "location_hdop"
    TIME_SKEW = "location_time_skew"
    TELEPORT = "location_teleport"
    ALTITUDE = "location_altitude"
    FROZEN = "location_frozen"
    CN0_UNIFORM = "location_cn0_uniform"
    CLOCK_JUMP = "location_clock_jump"
    STALE = "location_stale"
    SOURCE = "location_source"


@dataclass(frozen=True, slots=True, kw_only=True)
class LocationPolicy:
    """Thresholds of the plausibility checks (sources in the module docstring)."""

    accepted_gga_quality: frozenset[int] = frozenset({1, 2, 3, 4, 5})
    rejected_modes: frozenset[str] = frozenset({"E", "M", "S", "N"})
    min_satellites: int = 5
    max_hdop: float = 5.0
    max_time_skew_s: float = 5.0
    max_fix_age_s: float = 30.0
    max_speed_mps: float = 90.0
    min_altitude_m: float = -500.0
    max_altitude_m: float = 9000.0
    max_vertical_speed_mps: float = 10.0
    frozen_repeats: int = 3
    cn0_min_satellites: int = 6
    cn0_min_stddev_db: float = 1.0
    max_clock_drift_s: float = 2.0
    accepted_sources: frozenset[str] = frozenset({SourceKind.SERIAL, SourceKind.GPSD})


def policy_from_mapping(data: Mapping[str, object]) -> LocationPolicy:
    """Build a policy from a JSON/TOML mapping; unknown keys or wrong types raise PolicyInvalid."""
    known = {f.name: f for f in fields(LocationPolicy)}
    kwargs: dict[str, object] = {}
    for key, value in data.items():
        if key not in known:
            raise PolicyInvalid(f"location policy: unknown key {key!r}")
        default = getattr(LocationPolicy(), key)
        if isinstance(default, frozenset):
            if not isinstance(value, list | tuple | set | frozenset):
                raise PolicyInvalid(f"location policy: {key} must be a list")
            value = frozenset(value)
        elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not type(default):
            raise PolicyInvalid(f"location policy: {key} must be {type(default).__name__}")
        if key == "accepted_sources" and isinstance(value, frozenset):
            value = _sources(value)
        kwargs[key] = value
    return LocationPolicy(**kwargs)  # type: ignore[arg-type]  # each value type-checked above


def _sources(value: frozenset[object]) -> frozenset[str]:
    known = set(SourceKind)
    unknown = sorted(repr(v) for v in value if not isinstance(v, str) or v not in known)
    if unknown:
        raise PolicyInvalid(
            f"location policy: accepted_sources: unknown source kind(s) {', '.join(unknown)} "
            f"(known: {', '.join(SourceKind)})"
        )
    if not value:
        raise PolicyInvalid("location policy: accepted_sources names no source kind")
    return frozenset(SourceKind(v) for v in value if isinstance(v, str))


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    reason_code: LocationReason
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PlausibilityResult:
    ok: bool
    failures: tuple[Failure, ...]

    @property
    def reason_codes(self) -> tuple[str, ...]:
        return tuple(f.reason_code.value for f in self.failures)

    def raise_for_failure(self) -> None:
        """Raise LocationStale or LocationImplausible (reason = first failure's code) if not ok."""
        if self.ok:
            return
        first = self.failures[0]
        message = "; ".join(f"{f.reason_code}: {f.message}" for f in self.failures)
        if first.reason_code is LocationReason.STALE:
            raise LocationStale(message)
        raise LocationImplausible(message, reason=first.reason_code.value)


def _quality(fix: Fix, p: LocationPolicy) -> str | None:
    if fix.quality is not None and fix.quality not in p.accepted_gga_quality:
        return f"GGA fix quality {fix.quality} is not a measured fix"
    if fix.rmc_status is not None and fix.rmc_status != "A":
        return f"RMC status {fix.rmc_status!r} (not valid)"
    if fix.rmc_mode in p.rejected_modes:
        return f"RMC mode {fix.rmc_mode!r} is not a measured fix"
    if fix.gns_mode and set(fix.gns_mode) & (p.rejected_modes - {"N"}):
        return f"GNS mode {fix.gns_mode!r} includes a non-measured solution"
    return None


def _satellites(fix: Fix, p: LocationPolicy) -> str | None:
    n = fix.satellites_used
    if n is None or n < p.min_satellites:
        return f"{n if n is not None else 'unknown'} satellites used, need {p.min_satellites}"
    return None


def _hdop(fix: Fix, p: LocationPolicy) -> str | None:
    if fix.hdop is None or fix.horizontal_accuracy_m is None:
        return "receiver reported no HDOP: horizontal accuracy unknown"
    if fix.hdop > p.max_hdop:
        return f"HDOP {fix.hdop} above {p.max_hdop}"
    return None


def _altitude(fix: Fix, p: LocationPolicy) -> str | None:
    alt = fix.altitude_m
    if alt is not None and not p.min_altitude_m <= alt <= p.max_altitude_m:
        return f"altitude {alt} m outside [{p.min_altitude_m}, {p.max_altitude_m}] m"
    return None


def _cn0(fix: Fix, p: LocationPolicy) -> str | None:
    values = fix.cn0_values()
    if len(values) >= p.cn0_min_satellites:
        spread = statistics.pstdev(values)
        if spread < p.cn0_min_stddev_db:
            return f"C/N0 std dev {spread:.2f} dB-Hz over {len(values)} satellites"
    return None


def _time(fix: Fix, p: LocationPolicy, now: dt.datetime) -> list[Failure]:
    if fix.utc is None:
        return [
            Failure(reason_code=LocationReason.TIME_SKEW, message="no valid date from receiver")
        ]
    out = []
    age = (now - fix.utc).total_seconds()
    if age > p.max_fix_age_s:
        out.append(Failure(reason_code=LocationReason.STALE, message=f"fix is {age:.1f} s old"))
    if -age > p.max_time_skew_s:
        msg = f"fix time {-age:.1f} s ahead of system time"
        out.append(Failure(reason_code=LocationReason.TIME_SKEW, message=msg))
    if fix.received_at is not None:
        skew = (fix.utc - fix.received_at).total_seconds()
        if abs(skew) > p.max_time_skew_s:
            msg = f"receiver time {skew:+.1f} s from agent clock at reception"
            out.append(Failure(reason_code=LocationReason.TIME_SKEW, message=msg))
    return out


def _frozen(fix: Fix, track: Sequence[Fix], p: LocationPolicy) -> str | None:
    for old in track:
        if old.nmea_digest == fix.nmea_digest:
            return "raw NMEA identical to an earlier fix (replayed)"
        if fix.utc is not None and old.utc == fix.utc:
            return f"receiver time {fix.utc.isoformat()} repeated"
    recent = track[len(track) - (p.frozen_repeats - 1) :] if p.frozen_repeats > 1 else []
    cn0 = sorted(fix.cn0_values())
    if cn0 and len(recent) == p.frozen_repeats - 1:
        key = (fix.latitude, fix.longitude, fix.altitude_m)
        if all(
            (o.latitude, o.longitude, o.altitude_m) == key and sorted(o.cn0_values()) == cn0
            for o in recent
        ):
            return f"position and C/N0 identical over {p.frozen_repeats} fixes"
    return None


def _vertical(prev: Fix, fix: Fix, elapsed: float, p: LocationPolicy) -> str | None:
    if fix.altitude_m is None or prev.altitude_m is None:
        return None
    if fix.vertical_accuracy_m is None or prev.vertical_accuracy_m is None:
        return None
    climb = abs(fix.altitude_m - prev.altitude_m)
    allowed = (
        p.max_vertical_speed_mps * elapsed + fix.vertical_accuracy_m + prev.vertical_accuracy_m
    )
    if climb > allowed:
        return f"altitude moved {climb:.1f} m in {elapsed:.1f} s (allowed {allowed:.1f} m)"
    return None


def _motion(fix: Fix, track: Sequence[Fix], p: LocationPolicy) -> list[Failure]:
    if not track or fix.utc is None:
        return []
    prev = track[-1]
    if prev.utc is None:
        return []
    out = []
    elapsed = (fix.utc - prev.utc).total_seconds()
    if elapsed < 0:
        msg = f"receiver time went back {-elapsed:.1f} s"
        out.append(Failure(reason_code=LocationReason.CLOCK_JUMP, message=msg))
    elif fix.received_at is not None and prev.received_at is not None:
        wall = (fix.received_at - prev.received_at).total_seconds()
        if abs(elapsed - wall) > p.max_clock_drift_s:
            msg = f"receiver time advanced {elapsed:.1f} s while agent clock advanced {wall:.1f} s"
            out.append(Failure(reason_code=LocationReason.CLOCK_JUMP, message=msg))
    if elapsed > 0 and (vertical := _vertical(prev, fix, elapsed, p)) is not None:
        out.append(Failure(reason_code=LocationReason.ALTITUDE, message=vertical))
    if elapsed > 0:
        _, _, dist = _GEOD.inv(prev.longitude, prev.latitude, fix.longitude, fix.latitude)
        slack = (prev.horizontal_accuracy_m or 0.0) + (fix.horizontal_accuracy_m or 0.0)
        speed = max(0.0, float(dist) - slack) / elapsed
        if speed > p.max_speed_mps:
            msg = f"{float(dist):.0f} m in {elapsed:.1f} s needs {speed:.0f} m/s"
            out.append(Failure(reason_code=LocationReason.TELEPORT, message=msg))
    return out


_SIMPLE = (
    (LocationReason.FIX_QUALITY, _quality),
    (LocationReason.TOO_FEW_SATELLITES, _satellites),
    (LocationReason.HDOP, _hdop),
    (LocationReason.ALTITUDE, _altitude),
    (LocationReason.CN0_UNIFORM, _cn0),
)


def check_fix(
    fix: Fix, track: Sequence[Fix], policy: LocationPolicy, now: dt.datetime
) -> PlausibilityResult:
    """Run every check on ``fix`` given the recent ``track`` (oldest first, fixes before ``fix``).

    ``now`` is the verifier's (aware, UTC) time. Returns all failures, never raises.
    """
    failures = [
        Failure(reason_code=code, message=msg)
        for code, check in _SIMPLE
        if (msg := check(fix, policy)) is not None
    ]
    failures += _time(fix, policy, now)
    if (msg := _frozen(fix, track, policy)) is not None:
        failures.append(Failure(reason_code=LocationReason.FROZEN, message=msg))
    failures += _motion(fix, track, policy)
    return PlausibilityResult(ok=not failures, failures=tuple(failures))
