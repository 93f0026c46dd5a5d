"""Zones: the real Natural Earth file, its pitfalls, and properties of the decision."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod

from geoattest.errors import NotFound, ZoneInvalid
from geofence.zones import DECISION_BY_CODE, ZoneDecision, ZoneSet, load_zones
from tests.paths import vector
from tests.unit.geofence.captures import fixes

GEOD = Geod(ellps="WGS84")
INSIDE, OUTSIDE, UNCERTAIN = ZoneDecision.INSIDE, ZoneDecision.OUTSIDE, ZoneDecision.UNCERTAIN


@functools.cache
def countries_text() -> str:
    return vector("zones/ne_110m_admin_0_countries.geojson").read_text(encoding="utf-8")


@functools.cache
def countries() -> ZoneSet:
    return load_zones(countries_text(), repair=True)


def square(zone_id: str, x0: float, y0: float, x1: float, y1: float) -> dict[str, object]:
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return {"type": "Feature", "id": zone_id, "properties": {"name": zone_id},
            "geometry": {"type": "Polygon", "coordinates": [ring]}}  # fmt: skip


def collection(*features: dict[str, object]) -> str:
    return json.dumps({"type": "FeatureCollection", "features": list(features)})


# --- the Natural Earth file -------------------------------------------------------------------


def test_sudan_invalid_is_rejected_by_name() -> None:
    with pytest.raises(ZoneInvalid, match=r"'SDN' \(Sudan\).*Self-intersection"):
        load_zones(countries_text())


def test_repair_reports_sudan_only() -> None:
    zones = countries()
    assert len(zones) == 177
    assert [(r.zone_id, r.name) for r in zones.repaired] == [("SDN", "Sudan")]
    assert zones.repaired[0].reason.startswith("Self-intersection")
    assert shapely.is_valid(zones.zone("SDN").geometry)


def test_ids_use_adm0_a3_not_iso() -> None:
    zones = countries()
    assert zones.zone("FRA").name == "France"  # ISO_A3 is -99 for France and Norway
    assert zones.zone("NOR").name == "Norway"


EXPECTED_COUNTRY = {
    "bt451.log": "LTU",
    "nl2008u.log": "DEU",
    "haicom-305N.log": "AUS",
    "ublox-neo-m9n-nmea.log": "USA",
    "furuno_gl_ga.log": "NOR",
    "quectel-eg25-g.log": "TUR",
    "garmin-geko201.log": "ESP",  # simulated fix, but the coordinates are Madrid's
    "st-teseo-liv4f.log": "FRA",
    "april6_2019.log": "FRA",
}


@pytest.mark.parametrize("name", sorted(EXPECTED_COUNTRY))
def test_capture_fixes_land_in_expected_country(name: str) -> None:
    zones = countries()
    for f in fixes(name):
        accuracy = f.horizontal_accuracy_m or 0.0
        matches = zones.match(f.latitude, f.longitude, accuracy)
        assert [(m.zone.id, m.verdict.decision) for m in matches] == [
            (EXPECTED_COUNTRY[name], INSIDE)
        ]


def test_fiji_across_the_antimeridian() -> None:
    zones = countries()
    # Vanua Levu straddles 180°: 0.01° from the split line (1.07 km) with a 2 km disc over it.
    # Treating the split line as border would say "uncertain"; the island goes on: inside.
    east = zones.decide("FJI", -16.3, 179.99, 2000.0)
    west = zones.decide("FJI", -16.3, -179.99, 2000.0)
    assert (east.decision, west.decision) == (INSIDE, INSIDE)
    assert 10_000 < east.distance_to_border_m < 20_000  # the real coast
    assert zones.decide("FJI", -16.3, 179.99, 30_000.0).decision is UNCERTAIN
    assert zones.decide("FJI", -10.0, 179.0, 1000.0).decision is OUTSIDE  # open sea


def test_russia_across_the_antimeridian() -> None:
    zones = countries()
    for lon in (179.9, -179.9):
        v = zones.decide("RUS", 67.5, lon, 5000.0)
        assert v.decision is INSIDE, lon
    # bounds span -180..180: a bbox prefilter would say "maybe" for the Pacific; we say outside
    assert zones.decide("RUS", 30.0, -150.0, 100.0).decision is OUTSIDE
    assert [m.zone.id for m in zones.match(30.0, -150.0, 100.0)] == []


def test_antarctica_polar() -> None:
    zones = countries()
    assert zones.decide("ATA", -90.0, 0.0, 100.0).decision is INSIDE  # the pole itself
    v = zones.decide("ATA", -89.0, 123.0, 50_000.0)
    assert v.decision is INSIDE
    # NE's Ross Ice Shelf edge reaches -85.6°, 500 km away (brute force); near a pole the bound
    # only counts latitude, so it is conservative: 378 km here.
    assert 350_000 < v.distance_to_border_m <= 500_046
    assert zones.decide("ATA", -60.0, 0.0, 100.0).decision is OUTSIDE


def test_inside_but_accuracy_crosses_border_is_uncertain() -> None:
    zones = countries()
    lat, lon = 55.79, 23.57  # Lithuania, about 54 km from the nearest border
    assert zones.decide("LTU", lat, lon, 20.0).decision is INSIDE
    assert zones.decide("LTU", lat, lon, 60_000.0).decision is UNCERTAIN


def test_point_just_outside_is_outside() -> None:
    zones = load_zones(collection(square("Z", 10.0, 50.0, 11.0, 51.0)))
    # 0.001° of longitude east of the border at 50.5°N is about 71 m
    v = zones.decide("Z", 50.5, 11.001, 10.0)
    assert v.decision is OUTSIDE
    assert v.distance_to_border_m == pytest.approx(70.9, abs=0.5)
    assert zones.decide("Z", 50.5, 11.001, 100.0).decision is UNCERTAIN
    assert zones.decide("Z", 50.5, 10.999, 10.0).decision is INSIDE


def test_unknown_zone() -> None:
    with pytest.raises(NotFound):
        countries().decide("XXX", 0.0, 0.0, 1.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        ('{"type": "Topology"}', "FeatureCollection"),
        (collection({"type": "Feature", "properties": {}, "geometry": None}), "no id"),
        (
            collection(
                {
                    "type": "Feature",
                    "id": "P",
                    "properties": {},
                    "geometry": {"type": "Point", "coordinates": [0, 0]},
                }
            ),
            "Polygon",
        ),
        (collection(square("A", 0, 0, 1, 1), square("A", 2, 2, 3, 3)), "duplicate zone ids: A"),
        (collection(square("W", 170, 0, -170, 1)), "antimeridian"),
        (collection(square("B", 0, 0, 200, 1)), "coordinates outside"),
    ],
)
def test_bad_zone_files(text: str, message: str) -> None:
    with pytest.raises(ZoneInvalid, match=message):
        load_zones(text)


def test_batch_matches_single_on_real_points() -> None:
    zones = countries()
    rng = np.random.default_rng(7)
    for zid in ("LTU", "FJI", "RUS", "ATA", "USA"):
        x0, y0, x1, y1 = shapely.bounds(zones.zone(zid).geometry)
        n = 300
        lats, lons = rng.uniform(y0, y1, n), rng.uniform(x0, x1, n)
        accs = rng.choice([0.0, 50.0, 5000.0, 80_000.0], n)
        codes = zones.decide_many(lats, lons, accs, zid)
        single = [zones.decide(zid, float(a), float(b), float(c)).decision
                  for a, b, c in zip(lats, lons, accs, strict=True)]  # fmt: skip
        assert [DECISION_BY_CODE[int(c)] for c in codes] == single, zid


# --- properties ----------------------------------------------------------------------------------

ZONE_IDS = ["LTU", "FJI", "RUS", "ATA", "NOR", "CHL", "IDN"]


@st.composite
def near_border(draw: st.DrawFn) -> tuple[str, float, float, float]:
    zid = draw(st.sampled_from(ZONE_IDS))
    coords = shapely.get_coordinates(shapely.boundary(countries().zone(zid).geometry))
    x, y = coords[draw(st.integers(0, len(coords) - 1))]
    dx, dy = draw(st.floats(-0.5, 0.5)), draw(st.floats(-0.5, 0.5))
    lat = float(np.clip(y + dy, -90, 90))
    lon = float((x + dx + 180) % 360 - 180)
    accuracy = draw(st.sampled_from([0.0, 1.0, 30.0, 500.0, 5000.0, 40_000.0]))
    return zid, lat, lon, accuracy


def disc_points(
    lat: float, lon: float, radius: float, n: int = 24
) -> tuple[list[float], list[float]]:
    az = np.linspace(0, 360, n, endpoint=False)
    lons, lats, _ = GEOD.fwd(np.full(n, lon), np.full(n, lat), az, np.full(n, radius))
    return list(lats), list(lons)


@settings(max_examples=150, deadline=None)
@given(near_border())
def test_decision_is_sound(case: tuple[str, float, float, float]) -> None:
    zid, lat, lon, accuracy = case
    zones = countries()
    geometry = zones.zone(zid).geometry
    v = zones.decide(zid, lat, lon, accuracy)
    centre_in = bool(shapely.intersects_xy(geometry, lon, lat))
    if v.decision is INSIDE:
        assert centre_in
        assert v.distance_to_border_m >= accuracy
    elif v.decision is OUTSIDE:
        assert not centre_in
        assert v.distance_to_border_m >= accuracy
    else:
        assert v.distance_to_border_m <= accuracy
    if v.decision is not UNCERTAIN and accuracy > 0:
        lats, lons = disc_points(lat, lon, accuracy)
        on_disc = shapely.intersects_xy(geometry, lons, lats)
        assert (on_disc == (v.decision is INSIDE)).all()


@settings(max_examples=100, deadline=None)
@given(near_border(), st.floats(0.0, 1.0))
def test_shrinking_accuracy_never_flips(case: tuple[str, float, float, float], k: float) -> None:
    zid, lat, lon, accuracy = case
    zones = countries()
    wide = zones.decide(zid, lat, lon, accuracy).decision
    narrow = zones.decide(zid, lat, lon, accuracy * k).decision
    if wide is not UNCERTAIN:
        assert narrow is wide
    assert {wide, narrow} != {INSIDE, OUTSIDE}


@settings(max_examples=60, deadline=None)
@given(st.lists(near_border(), min_size=1, max_size=20))
def test_batch_equals_single(cases: list[tuple[str, float, float, float]]) -> None:
    zones = countries()
    zid = cases[0][0]
    lats = [c[1] for c in cases]
    lons = [c[2] for c in cases]
    accs = [c[3] for c in cases]
    codes = zones.decide_many(lats, lons, accs, zid)
    for (_, lat, lon, acc), code in zip(cases, codes, strict=True):
        assert DECISION_BY_CODE[int(code)] is zones.decide(zid, lat, lon, acc).decision


def test_distance_is_a_tight_lower_bound() -> None:
    zones = countries()
    geometry = zones.zone("NOR").geometry
    boundary = shapely.segmentize(shapely.boundary(geometry), 0.002)  # ~100-200 m steps
    bx, by = shapely.get_coordinates(boundary).T
    for lat, lon in [(60.0, 10.0), (69.5, 20.0), (59.95, 11.01), (64.0, 12.5)]:
        _, _, d = GEOD.inv(np.full(bx.shape, lon), np.full(by.shape, lat), bx, by)
        brute = float(d.min())  # >= the true distance, by at most ~100 m
        got = zones.decide("NOR", lat, lon, 0.0).distance_to_border_m
        assert got <= brute + 1e-6
        assert got >= 0.95 * brute - 150
        assert math.isfinite(got)
