"""A zone decision remembered for the next fix of the same receiver.

A stationary or slow node's fixes land metres apart, while the zone border is usually kilometres
away. Once a decision was made in full at a point P (``inside`` or ``outside``, with a lower
bound d of P's geodesic distance to the border), a later fix at Q needs no polygon work when the
whole of its accuracy disc provably stays on P's side:

* δ(P, Q) below is an upper bound of the geodesic distance from P to Q on the WGS84 ellipsoid:
  the ellipsoid's metric ``M² dφ² + (N cos φ)² dλ²`` is at most the sphere's
  ``R'² (dφ² + cos² φ dλ²)`` with ``R' = a / sqrt(1 - e²)`` (the largest radius of curvature,
  M and N both at most R'), so the great-circle path in geodetic coordinates is no longer on
  the ellipsoid than ``R' * angle``, and the geodesic is no longer than that path;
* the geodesic from P to Q (length ≤ δ < d) touches no border point, so Q is on P's side, and
  Q's distance to the border is at least ``d - δ`` (triangle inequality);
* so when ``d - δ`` exceeds Q's accuracy radius, Q's decision is P's, exactly as the full
  computation would find it, with ``d - δ`` as Q's (looser) lower bound.

The reference point stays the one decided in full (bounds are never chained from a shortcut),
and ``uncertain`` is never carried over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from geofence._border import E2, A

R_MAX = A / math.sqrt(1 - E2)  # the largest radius of curvature of WGS84 (at the poles), metres


@dataclass(frozen=True, slots=True, kw_only=True)
class DecidedAt:
    """``decision`` (inside or outside) for ``zone_id``, made in full at (lat, lon), whose
    geodesic distance to the border is at least ``distance_m``. ``zones`` is the identity of
    the zone set it was made against (a reloaded set invalidates it)."""

    zones: object
    zone_id: str
    lat: float
    lon: float
    inside: bool
    distance_m: float


def distance_upper_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """An upper bound of the geodesic distance between two points (module docstring)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    angle = 2 * math.asin(math.sqrt(min(1.0, h)))
    return R_MAX * angle * (1 + 1e-9) + 1e-6  # the margin covers rounding


def carried_distance_m(
    near: DecidedAt, zones: object, zone_id: str, lat: float, lon: float, accuracy_m: float
) -> float | None:
    """Q's lower bound ``d - δ`` when ``near`` decides the fix at (lat, lon) ± accuracy_m for
    ``zone_id`` of ``zones``; None when the decision must be made in full."""
    if near.zones is not zones or near.zone_id != zone_id or not near.distance_m > accuracy_m:
        return None
    remaining = near.distance_m - distance_upper_m(near.lat, near.lon, lat, lon)
    return remaining if remaining > accuracy_m else None
