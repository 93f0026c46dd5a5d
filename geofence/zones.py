"""Zones from GeoJSON and the inside/outside/uncertain decision for a fix with an accuracy radius.

**Loading** (:func:`load_zones`): a FeatureCollection (or one Feature) of Polygon/MultiPolygon
features in WGS84 lon/lat (RFC 7946). The zone id is, in this order: the feature's ``id``
member, its ``id`` property, or its ``ADM0_A3`` property (Natural Earth, where ``ISO_A3`` can be
``-99``); the name is the ``name``, ``NAME`` or ``ADMIN`` property, else the id; the version
is the ``version`` property (a positive integer, default 1; tokens name it). Invalid geometry
raises :class:`~geoattest.errors.ZoneInvalid` naming the feature and GEOS's
``is_valid_reason``; ``repair=True`` instead repairs it with ``make_valid`` and lists every
repaired feature in ``ZoneSet.repaired``. Antimeridian-split MultiPolygons are supported (the
split edges are not treated as border); an *unsplit* ring with an edge spanning more than 180° of
longitude is rejected (RFC 7946 §3.1.9 asks for the split).

**Decision** (:meth:`ZoneSet.decide`): ``inside`` only when the whole accuracy disc (radius in
metres on the WGS84 ellipsoid) is inside the zone, ``outside`` only when it is wholly outside,
``uncertain`` otherwise. The distance to the border is a conservative lower bound of the geodesic
distance (see :mod:`geofence._border`), so ``inside`` is never claimed for a disc that crosses.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import shapely

from geoattest.errors import NotFound, ZoneGeometryInvalid, ZoneInvalid
from geofence._batch import INSIDE, OUTSIDE, UNCERTAIN, BatchIndex, Codes
from geofence._border import Border, degree_radius
from geofence.nearby import DecidedAt, carried_distance_m


class ZoneDecision(enum.StrEnum):
    INSIDE = "inside"
    OUTSIDE = "outside"
    UNCERTAIN = "uncertain"


DECISION_BY_CODE = {OUTSIDE: ZoneDecision.OUTSIDE, INSIDE: ZoneDecision.INSIDE,
                    UNCERTAIN: ZoneDecision.UNCERTAIN}  # fmt: skip
"""``decide_many`` codes (int8) → decisions: 0 outside, 1 inside, 2 uncertain."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ZoneVerdict:
    zone_id: str
    decision: ZoneDecision
    distance_to_border_m: float  # lower bound of the geodesic distance; inf when no border


@dataclass(frozen=True, slots=True, kw_only=True)
class ZoneRepair:
    zone_id: str
    name: str
    reason: str  # GEOS is_valid_reason before the repair


@dataclass(frozen=True, slots=True, kw_only=True)
class Zone:
    id: str
    name: str
    geometry: shapely.Geometry  # Polygon or MultiPolygon, prepared
    version: int = 1  # the feature's ``version`` property (tokens name it), 1 when absent


def _feature_label(index: int, feature: dict[str, object]) -> tuple[str, str]:
    props = feature.get("properties")
    props = props if isinstance(props, dict) else {}
    raw = feature.get("id", props.get("id", props.get("ADM0_A3")))
    if not isinstance(raw, str | int) or isinstance(raw, bool) or raw == "":
        raise ZoneInvalid(f"feature #{index}: no id (feature 'id', property 'id' or 'ADM0_A3')")
    name = props.get("name") or props.get("NAME") or props.get("ADMIN") or str(raw)
    return str(raw), str(name)


def _check_coordinates(label: str, geometry: shapely.Geometry) -> None:
    for ring in shapely.get_rings(shapely.get_parts(geometry)):
        c = shapely.get_coordinates(ring)
        if (
            not np.isfinite(c).all()
            or (np.abs(c[:, 0]) > 180).any()
            or (np.abs(c[:, 1]) > 90).any()
        ):
            raise ZoneInvalid(f"{label}: coordinates outside lon [-180, 180] / lat [-90, 90]")
        jump = np.abs(np.diff(c[:, 0])) > 180
        pole = (np.abs(c[:-1, 1]) == 90) & (c[:-1, 1] == c[1:, 1])
        if (jump & ~pole).any():
            raise ZoneInvalid(f"{label}: an edge spans more than 180° of longitude; "
                              "split it at the antimeridian (RFC 7946 §3.1.9)")  # fmt: skip


def _polygonal(geometry: shapely.Geometry) -> shapely.Geometry:
    parts = [p for p in shapely.get_parts(geometry) if p.geom_type in ("Polygon", "MultiPolygon")]
    polys = [q for p in parts for q in shapely.get_parts(p)]
    return shapely.multipolygons(polys)


def _zone(index: int, feature: object, repair: bool) -> tuple[Zone, ZoneRepair | None]:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise ZoneInvalid(f"feature #{index}: not a GeoJSON Feature")
    zone_id, name = _feature_label(index, feature)
    label = f"zone {zone_id!r} ({name})"
    geo = feature.get("geometry")
    if not isinstance(geo, dict) or geo.get("type") not in ("Polygon", "MultiPolygon"):
        raise ZoneInvalid(f"{label}: geometry must be a Polygon or MultiPolygon")
    try:
        geometry = shapely.from_geojson(json.dumps(geo))
    except (shapely.errors.GEOSException, ValueError, TypeError) as e:
        raise ZoneInvalid(f"{label}: unreadable geometry: {e}") from e
    if geometry.is_empty:
        raise ZoneInvalid(f"{label}: empty geometry")
    _check_coordinates(label, geometry)
    fixed = None
    if not shapely.is_valid(geometry):
        reason = str(shapely.is_valid_reason(geometry))
        if not repair:
            raise ZoneGeometryInvalid(f"{label}: invalid geometry: {reason}")
        geometry = _polygonal(shapely.make_valid(geometry))
        fixed = ZoneRepair(zone_id=zone_id, name=name, reason=reason)
    shapely.prepare(geometry)
    props = feature.get("properties")
    version = props.get("version", 1) if isinstance(props, dict) else 1
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ZoneInvalid(f"{label}: property 'version' must be a positive integer")
    return Zone(id=zone_id, name=name, geometry=geometry, version=version), fixed


def load_zones(geojson_text: str, *, repair: bool = False) -> ZoneSet:
    """Load zones from GeoJSON text. Raises ZoneInvalid naming the feature and the reason."""
    try:
        doc = json.loads(geojson_text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise ZoneInvalid(f"zones file is not JSON: {e}") from e
    if isinstance(doc, dict) and doc.get("type") == "Feature":
        doc = {"type": "FeatureCollection", "features": [doc]}
    if not isinstance(doc, dict) or not isinstance(doc.get("features"), list):
        raise ZoneInvalid("zones file must be a GeoJSON FeatureCollection")
    zones, repairs = [], []
    for i, feature in enumerate(doc["features"]):
        zone, fixed = _zone(i, feature, repair)
        zones.append(zone)
        if fixed is not None:
            repairs.append(fixed)
    return ZoneSet(zones, repaired=repairs)


@dataclass(frozen=True, slots=True, kw_only=True)
class ZoneMatch:
    zone: Zone
    verdict: ZoneVerdict


def _check_point(lat: float, lon: float, accuracy_m: float) -> None:
    if not (-90 <= lat <= 90 and -180 <= lon <= 180 and 0 <= accuracy_m < math.inf):
        raise ValueError(f"bad point: lat={lat} lon={lon} accuracy={accuracy_m}")


class ZoneSet:
    """Loaded zones with per-zone border indexes and an STRtree over all zones."""

    def __init__(self, zones: list[Zone], *, repaired: list[ZoneRepair] | None = None) -> None:
        self.zones = tuple(zones)
        self.repaired = tuple(repaired or ())
        self._by_id = {z.id: i for i, z in enumerate(self.zones)}
        if len(self._by_id) != len(self.zones):
            dup = sorted({z.id for z in self.zones if [y.id for y in self.zones].count(z.id) > 1})
            raise ZoneInvalid(f"duplicate zone ids: {', '.join(dup)}")
        self._borders = [Border(z.geometry) for z in self.zones]
        self._batch: dict[int, BatchIndex] = {}
        self._tree = shapely.STRtree([z.geometry for z in self.zones])

    def __len__(self) -> int:
        return len(self.zones)

    def _index(self, zone_id: str) -> int:
        try:
            return self._by_id[zone_id]
        except KeyError:
            raise NotFound(f"no zone with id {zone_id!r}") from None

    def zone(self, zone_id: str) -> Zone:
        return self.zones[self._index(zone_id)]

    def decide(self, zone_id: str, lat: float, lon: float, accuracy_m: float) -> ZoneVerdict:
        """Decide one fix against one zone (see the module docstring); NotFound for unknown ids."""
        _check_point(lat, lon, accuracy_m)
        i = self._index(zone_id)
        distance = self._borders[i].distance_m(lat, lon, need=accuracy_m)
        if distance > accuracy_m:  # then no border point is within accuracy_m either
            inside = shapely.intersects_xy(self.zones[i].geometry, lon, lat)
            code = INSIDE if inside else OUTSIDE
        else:
            code, near = self._decide_code(i, lat, lon, accuracy_m)
            # both are lower bounds of the true distance, so their max is one too
            distance = max(distance, min(near, accuracy_m))
        return ZoneVerdict(
            zone_id=zone_id, decision=DECISION_BY_CODE[code], distance_to_border_m=distance
        )

    def decide_near(
        self, zone_id: str, lat: float, lon: float, accuracy_m: float, near: DecidedAt | None
    ) -> tuple[ZoneVerdict, DecidedAt | None]:
        """:meth:`decide` for the next fix of a receiver: ``near`` is what this returned for its
        previous fix (None at first). When the fix provably stays on that side of the border
        (:mod:`geofence.nearby`) no polygon is touched; the decision is the one ``decide`` would
        make, the distance a lower bound that may be looser. Returns what to pass next time."""
        _check_point(lat, lon, accuracy_m)
        self._index(zone_id)
        if near is not None:
            carried = carried_distance_m(near, self, zone_id, lat, lon, accuracy_m)
            if carried is not None:
                decision = ZoneDecision.INSIDE if near.inside else ZoneDecision.OUTSIDE
                verdict = ZoneVerdict(
                    zone_id=zone_id, decision=decision, distance_to_border_m=carried
                )
                return verdict, near
        verdict = self.decide(zone_id, lat, lon, accuracy_m)
        if verdict.decision is ZoneDecision.UNCERTAIN:
            return verdict, None
        decided = DecidedAt(
            zones=self,
            zone_id=zone_id,
            lat=lat,
            lon=lon,
            inside=verdict.decision is ZoneDecision.INSIDE,
            distance_m=verdict.distance_to_border_m,
        )
        return verdict, decided

    def _decide_code(self, i: int, lat: float, lon: float, accuracy_m: float) -> tuple[int, float]:
        near = self._borders[i].lower_bound_m(lat, lon, accuracy_m)
        if near <= accuracy_m:
            return UNCERTAIN, near
        inside = shapely.intersects_xy(self.zones[i].geometry, lon, lat)
        return (INSIDE if inside else OUTSIDE), near

    def decide_many(
        self,
        lats: npt.ArrayLike,
        lons: npt.ArrayLike,
        accuracies: npt.ArrayLike,
        zone_id: str,
    ) -> Codes:
        """Vectorised :meth:`decide` (decisions only): int8 codes, see ``DECISION_BY_CODE``."""
        la, lo, acc = (np.asarray(a, dtype=np.float64).ravel() for a in (lats, lons, accuracies))
        if not la.shape == lo.shape == acc.shape:
            raise ValueError("lats, lons and accuracies must have the same length")
        if not ((np.abs(la) <= 90).all() and (np.abs(lo) <= 180).all()
                and (acc >= 0).all() and np.isfinite(acc).all()):  # fmt: skip
            raise ValueError("lat must be in [-90, 90], lon in [-180, 180], accuracy >= 0")
        i = self._index(zone_id)
        index = self._batch.get(i)
        if index is None:
            index = self._batch[i] = BatchIndex(self.zones[i].geometry, self._borders[i])
        codes, exact = index.decide(la, lo, acc)
        for j in exact:
            codes[j] = self._decide_code(i, float(la[j]), float(lo[j]), float(acc[j]))[0]
        return codes

    def match(self, lat: float, lon: float, accuracy_m: float) -> tuple[ZoneMatch, ...]:
        """Every zone the fix is inside of or uncertain about, best first (STRtree lookup)."""
        _check_point(lat, lon, accuracy_m)
        rho = float(degree_radius(np.array([lat]), np.array([accuracy_m]))[0])
        rho = min(rho, 360.0)
        boxes = [
            shapely.box(lon - rho + k, lat - rho, lon + rho + k, lat + rho) for k in (-360, 0, 360)
        ]
        hits = np.unique(np.concatenate([self._tree.query(b) for b in boxes]))
        out = []
        for i in hits:
            verdict = self.decide(self.zones[i].id, lat, lon, accuracy_m)
            if verdict.decision is not ZoneDecision.OUTSIDE:
                out.append(ZoneMatch(zone=self.zones[i], verdict=verdict))
        order = {ZoneDecision.INSIDE: 0, ZoneDecision.UNCERTAIN: 1}
        return tuple(
            sorted(out, key=lambda m: (order[m.verdict.decision], -m.verdict.distance_to_border_m))
        )
