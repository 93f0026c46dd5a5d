"""``ZoneSet.decide_near``: a fix that provably stays on its predecessor's side is decided
without polygon work, and always as ``decide`` decides it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod

from geoattest.errors import NotFound
from geofence.nearby import DecidedAt, distance_upper_m
from geofence.zones import ZoneDecision
from tests.unit.geofence.test_zones import countries, near_border

GEOD = Geod(ellps="WGS84")
INSIDE, OUTSIDE, UNCERTAIN = ZoneDecision.INSIDE, ZoneDecision.OUTSIDE, ZoneDecision.UNCERTAIN
BERLIN = (52.52, 13.405)


@settings(max_examples=300, deadline=None)
@given(st.floats(-89.9, 89.9), st.floats(-180, 180), st.floats(-89.9, 89.9), st.floats(-180, 180))
def test_the_distance_bound_is_never_below_the_geodesic(
    lat1: float, lon1: float, lat2: float, lon2: float
) -> None:
    _, _, geodesic = GEOD.inv(lon1, lat1, lon2, lat2)
    assert distance_upper_m(lat1, lon1, lat2, lon2) >= geodesic
    # and useful: at most R' / M(0) = 1.0101 times the geodesic
    assert distance_upper_m(lat1, lon1, lat2, lon2) <= geodesic * 1.011 + 1e-3


@pytest.mark.parametrize("azimuth", [0.0, 45.0, 90.0, 180.0, 270.0])
def test_the_bound_holds_for_the_small_steps_a_receiver_makes(azimuth: float) -> None:
    for lat in (0.0, 45.0, 70.0, 89.0):
        for step in (0.5, 5.0, 50.0, 5000.0):
            lon2, lat2, _ = GEOD.fwd(10.0, lat, azimuth, step)
            assert step <= distance_upper_m(lat, 10.0, lat2, lon2) <= step * 1.011 + 1e-3


def test_a_steady_receiver_is_decided_from_its_previous_fix() -> None:
    zones = countries()
    first, near = zones.decide_near("DEU", *BERLIN, 10.0, None)
    assert first == zones.decide("DEU", *BERLIN, 10.0)
    assert near is not None
    lon, lat, _ = GEOD.fwd(BERLIN[1], BERLIN[0], 30.0, 8.0)
    again, kept = zones.decide_near("DEU", lat, lon, 12.0, near)
    assert kept is near  # the reference stays the point decided in full
    assert again.decision is INSIDE
    assert again.distance_to_border_m <= zones.decide("DEU", lat, lon, 12.0).distance_to_border_m
    assert again.distance_to_border_m >= first.distance_to_border_m - 8.1


def test_a_hint_for_another_zone_or_zone_set_is_not_used() -> None:
    zones = countries()
    _, near = zones.decide_near("DEU", *BERLIN, 10.0, None)
    assert near is not None
    foreign = DecidedAt(zones=object(), zone_id="DEU", lat=BERLIN[0], lon=BERLIN[1],
                        inside=False, distance_m=1e9)  # fmt: skip
    assert zones.decide_near("DEU", *BERLIN, 10.0, foreign)[0].decision is INSIDE
    other = DecidedAt(zones=zones, zone_id="POL", lat=BERLIN[0], lon=BERLIN[1],
                      inside=False, distance_m=1e9)  # fmt: skip
    assert zones.decide_near("DEU", *BERLIN, 10.0, other)[0].decision is INSIDE
    with pytest.raises(NotFound):
        zones.decide_near("XXX", *BERLIN, 10.0, near)


def test_a_teleport_is_decided_in_full() -> None:
    """A fix far from the reference (Paris after Berlin) must not inherit Berlin's side."""
    zones = countries()
    _, near = zones.decide_near("DEU", *BERLIN, 10.0, None)
    verdict, kept = zones.decide_near("DEU", 48.8566, 2.3522, 10.0, near)
    assert verdict.decision is OUTSIDE
    assert kept is not near


def test_a_disc_grown_past_the_carried_distance_is_decided_in_full() -> None:
    zones = countries()
    _, near = zones.decide_near("DEU", *BERLIN, 10.0, None)
    assert near is not None
    wide = near.distance_m + 1.0
    verdict, _ = zones.decide_near("DEU", *BERLIN, wide, near)
    assert verdict == zones.decide("DEU", *BERLIN, wide)


def test_uncertain_is_never_carried() -> None:
    zones = countries()
    # Frankfurt (Oder), on the German-Polish border, with a wide disc
    verdict, near = zones.decide_near("DEU", 52.3470, 14.5506, 2000.0, None)
    assert verdict.decision is UNCERTAIN
    assert near is None


@settings(max_examples=150, deadline=None)
@given(near_border(), st.lists(st.tuples(st.floats(0, 360), st.floats(0, 3000)), max_size=6))
def test_a_track_is_decided_as_decide_decides_each_fix(
    case: tuple[str, float, float, float], steps: list[tuple[float, float]]
) -> None:
    """Walk from a point near a border; every decision equals ``decide``'s, and every carried
    distance is a lower bound of ``decide``'s."""
    zid, lat, lon, accuracy = case
    zones = countries()
    near = None
    for azimuth, step in [(0.0, 0.0), *steps]:
        lon, lat, _ = GEOD.fwd(lon, lat, azimuth, step)
        lat = float(np.clip(lat, -89.99, 89.99))
        verdict, near = zones.decide_near(zid, lat, lon, accuracy, near)
        full = zones.decide(zid, lat, lon, accuracy)
        assert verdict.decision is full.decision
        if math.isfinite(full.distance_to_border_m):
            assert verdict.distance_to_border_m <= full.distance_to_border_m + 1e-6
