"""Plausibility and spoofing checks: real captures, and one attack test per check."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

import pytest

from geoattest.errors import LocationImplausible, LocationStale, PolicyInvalid
from geofence.fix import Fix, SatelliteSignal
from geofence.plausibility import (
    LocationPolicy,
    LocationReason,
    PlausibilityResult,
    check_fix,
    policy_from_mapping,
)
from tests.unit.geofence.captures import fixes

POLICY = LocationPolicy()
R = LocationReason


def run(name: str, policy: LocationPolicy = POLICY) -> list[PlausibilityResult]:
    """check_fix over a capture, each fix checked at its own time against the fixes before it."""
    out: list[PlausibilityResult] = []
    track: list[Fix] = []
    for f in fixes(name):
        now = f.utc or dt.datetime(2019, 3, 14, tzinfo=dt.UTC)
        out.append(check_fix(f, track[-10:], policy, now))
        track.append(f)
    return out


def at(f: Fix, seconds: float, **changes: object) -> Fix:
    """A copy of ``f`` moved ``seconds`` in time, with its own NMEA digest."""
    assert f.utc is not None
    utc = f.utc + dt.timedelta(seconds=seconds)
    digest = hashlib.sha256(f.nmea_digest + str(seconds).encode()).digest()
    return dataclasses.replace(f, utc=utc, nmea_digest=digest, **changes)  # type: ignore[arg-type]


GOOD = fixes("ublox-neo-m9n-nmea.log")[5]
NOW = GOOD.utc or dt.datetime.now(dt.UTC)


@pytest.mark.parametrize(
    "name", ["ublox-neo-m9n-nmea.log", "nl2008u.log", "furuno_gl_ga.log", "st-teseo-liv4f.log"]
)
def test_good_captures_pass(name: str) -> None:
    assert all(r.ok for r in run(name)), [r.failures for r in run(name) if not r.ok]


def test_garmin_simulator_mode_rejected() -> None:
    results = run("garmin-geko201.log")
    assert len(results) == 18
    assert all(R.FIX_QUALITY in r.failures[0].reason_code for r in results)
    assert all(r.reason_codes == ("location_fix_quality",) for r in results)


@pytest.mark.parametrize(
    ("quality", "ok"), [(1, True), (2, True), (6, False), (7, False), (8, False)]
)
def test_gga_quality(quality: int, ok: bool) -> None:
    r = check_fix(dataclasses.replace(GOOD, quality=quality), [], POLICY, NOW)
    assert (R.FIX_QUALITY not in r.reason_codes) is ok


@pytest.mark.parametrize("mode", ["S", "E", "M", "N"])
def test_rmc_mode_rejected(mode: str) -> None:
    r = check_fix(dataclasses.replace(GOOD, rmc_mode=mode), [], POLICY, NOW)
    assert r.reason_codes == ("location_fix_quality",)


def test_quectel_cold_start_altitude_flagged() -> None:
    quectel = fixes("quectel-eg25-g.log")
    results = run("quectel-eg25-g.log")
    bad = [i for i, f in enumerate(quectel) if f.altitude_m == -249.9]
    assert len(bad) == 1
    assert R.ALTITUDE in results[bad[0]].reason_codes  # 200 m below the fix 9 s before
    flagged = [i for i, r in enumerate(results) if not r.ok]
    assert all(R.ALTITUDE in results[i].reason_codes for i in flagged)
    # this phone's heights swing by tens of metres a second: the others flagged are its worst
    # jumps (-7.4 -> -99.4 m in 1 s, and back from -249.9); its first 13 fixes pass.
    assert flagged[0] == 13
    assert bad[0] in flagged


@pytest.mark.parametrize(("altitude", "ok"), [(-430.0, True), (-600.0, False), (9500.0, False)])
def test_altitude_bounds(altitude: float, ok: bool) -> None:
    r = check_fix(dataclasses.replace(GOOD, altitude_m=altitude), [], POLICY, NOW)
    assert r.ok is ok


def test_bt451_time_going_backwards_flagged() -> None:
    results = run("bt451.log")
    jumps = [i for i, r in enumerate(results) if R.CLOCK_JUMP in r.reason_codes]
    assert jumps == [8]  # 15:25:08.50 -> 14:33:06.00


def test_too_few_satellites() -> None:
    results = run("bt451.log")
    assert R.TOO_FEW_SATELLITES in results[0].reason_codes  # 4 satellites used
    r = check_fix(dataclasses.replace(GOOD, satellites_used=4), [], POLICY, NOW)
    assert r.reason_codes == ("location_too_few_satellites",)


def test_hdop_too_high() -> None:
    haicom = run("haicom-305N.log")
    assert R.HDOP in haicom[1].reason_codes  # HDOP 21.1 on the walking SiRF-II
    assert check_fix(dataclasses.replace(GOOD, hdop=5.5), [], POLICY, NOW).reason_codes == (
        "location_hdop",
    )


def test_week_rollover_time_flagged() -> None:
    first, second = fixes("april6_2019.log")
    when = dt.datetime(2019, 4, 7, 0, 2, 31, tzinfo=dt.UTC)  # after the 2019-04-06 rollover
    assert R.TIME_SKEW in check_fix(first, [], POLICY, when).reason_codes  # no usable date
    assert R.STALE in check_fix(second, [], POLICY, when).reason_codes  # a 1999 date in 2019
    received = dataclasses.replace(second, received_at=when)
    assert R.TIME_SKEW in check_fix(received, [], POLICY, when).reason_codes


# --- attacks: each fails if its check is removed --------------------------------------------------


def test_attack_teleport() -> None:
    moved = at(GOOD, 1.0, latitude=GOOD.latitude + 0.01)  # 1.1 km in 1 s
    assert check_fix(moved, [GOOD], POLICY, NOW).reason_codes == ("location_teleport",)
    walked = at(GOOD, 1.0, latitude=GOOD.latitude + 0.0002)  # 22 m in 1 s
    assert check_fix(walked, [GOOD], POLICY, NOW).ok


def test_attack_stale_fix() -> None:
    later = NOW + dt.timedelta(seconds=POLICY.max_fix_age_s + 1)
    r = check_fix(GOOD, [], POLICY, later)
    assert r.reason_codes == ("location_stale",)
    with pytest.raises(LocationStale):
        r.raise_for_failure()
    assert check_fix(GOOD, [], POLICY, NOW + dt.timedelta(seconds=29)).ok


def test_attack_fix_from_the_future_and_skewed_receiver() -> None:
    r = check_fix(GOOD, [], POLICY, NOW - dt.timedelta(seconds=10))
    assert r.reason_codes == ("location_time_skew",)
    skewed = dataclasses.replace(GOOD, received_at=NOW + dt.timedelta(seconds=8))
    assert check_fix(skewed, [], POLICY, NOW + dt.timedelta(seconds=8)).reason_codes == (
        "location_time_skew",
    )


def test_attack_constant_cn0() -> None:
    flat = tuple(dataclasses.replace(s, cn0_dbhz=42.0) for s in GOOD.signals)
    r = check_fix(dataclasses.replace(GOOD, signals=flat), [], POLICY, NOW)
    assert r.reason_codes == ("location_cn0_uniform",)
    with pytest.raises(LocationImplausible) as e:
        r.raise_for_failure()
    assert e.value.reason == "location_cn0_uniform"
    few = tuple(
        SatelliteSignal(constellation="GPS", prn=n, signal_id=None, elevation_deg=None,
                        azimuth_deg=None, cn0_dbhz=42.0)
        for n in range(5)
    )  # fmt: skip
    assert check_fix(dataclasses.replace(GOOD, signals=few), [], POLICY, NOW).ok  # too few to tell


def test_attack_replayed_nmea() -> None:
    later = NOW + dt.timedelta(seconds=5)
    r = check_fix(GOOD, [GOOD], POLICY, later)
    assert R.FROZEN in r.reason_codes
    same_time = dataclasses.replace(GOOD, nmea_digest=b"\x00" * 32)  # re-encoded, same epoch time
    assert R.FROZEN in check_fix(same_time, [GOOD], POLICY, later).reason_codes


def test_attack_frozen_position_and_signals() -> None:
    track = [GOOD, at(GOOD, 1.0)]
    frozen = at(GOOD, 2.0)
    r = check_fix(frozen, track, POLICY, NOW + dt.timedelta(seconds=2))
    assert r.reason_codes == ("location_frozen",)
    # a real static receiver: same position, fluctuating C/N0 -> fine
    varied = tuple(dataclasses.replace(s, cn0_dbhz=(s.cn0_dbhz or 30) + 1) for s in GOOD.signals)
    moving = at(GOOD, 2.0, signals=varied)
    assert check_fix(moving, track, POLICY, NOW + dt.timedelta(seconds=2)).ok


def test_attack_clock_jump_against_agent_clock() -> None:
    t0 = dataclasses.replace(GOOD, received_at=NOW)
    jumped = at(GOOD, 60.0, received_at=NOW + dt.timedelta(seconds=1))
    r = check_fix(jumped, [t0], POLICY, NOW + dt.timedelta(seconds=60))
    assert R.CLOCK_JUMP in r.reason_codes
    steady = at(GOOD, 1.0, received_at=NOW + dt.timedelta(seconds=1.2))
    assert check_fix(steady, [t0], POLICY, NOW + dt.timedelta(seconds=1)).ok


def test_policy_from_mapping() -> None:
    p = policy_from_mapping({"min_satellites": 6, "max_hdop": 3, "rejected_modes": ["S"]})
    assert (p.min_satellites, p.max_hdop, p.rejected_modes) == (6, 3.0, frozenset({"S"}))
    with pytest.raises(PolicyInvalid, match="unknown key"):
        policy_from_mapping({"max_hdopp": 3.0})
    with pytest.raises(PolicyInvalid, match="must be int"):
        policy_from_mapping({"min_satellites": "6"})


def test_accepted_sources_default_to_receivers_and_are_validated() -> None:
    assert LocationPolicy().accepted_sources == {"serial", "gpsd"}  # production: no file replay
    dev = policy_from_mapping({"accepted_sources": ["file", "serial", "gpsd"]})
    assert dev.accepted_sources == {"file", "serial", "gpsd"}
    with pytest.raises(PolicyInvalid, match=r"unknown source kind\(s\) 'radio'"):
        policy_from_mapping({"accepted_sources": ["serial", "radio"]})
    with pytest.raises(PolicyInvalid, match=r"unknown source kind\(s\) 1"):
        policy_from_mapping({"accepted_sources": [1]})
    with pytest.raises(PolicyInvalid, match="names no source kind"):
        policy_from_mapping({"accepted_sources": []})
    with pytest.raises(PolicyInvalid, match="must be a list"):
        policy_from_mapping({"accepted_sources": "file"})
