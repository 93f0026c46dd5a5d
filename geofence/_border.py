"""Conservative ellipsoidal distance from a point to a zone's border (private to zones.py).

The border is the zone boundary *minus* artificial edges: edges along the ±180° meridian that
the zone's other side continues (antimeridian splits, Fiji, Russia, Antarctica) and edges along a
pole (a single point on the Earth).

**Lower bound.** On the WGS84 ellipsoid ``ds² = M(φ)² dφ² + (N(φ) cos φ)² dλ²``. A point within
true (geodesic) distance R of P lies within ``|Δφ| ≤ R / M(0)`` of P's latitude, because
M(0) = a(1 - e²) is the smallest meridional radius. Over that latitude band let ``m`` be the
smallest M and ``p = a cos(φmax)`` a lower bound of N cos φ (N ≥ a). Any path of length ≤ R then
satisfies ``sqrt((m Δφ)² + (p Δλ)²) ≤ R`` (straight lines are shortest in that scaled plane), so
the planar distance in the scaled plane is a lower bound of the geodesic distance, for every
border point within R. Near a pole p → 0 and only latitude counts: still a valid bound.
Longitudes are compared modulo 360°, so a disc crossing the antimeridian is handled.
Being a lower bound, it can only turn a borderline ``inside``/``outside`` into ``uncertain``,
never the reverse; its slack is the change of cos φ across the band (< 1 % for R < 10 km below
80° latitude).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import shapely
from pyproj import Geod

A = 6378137.0
E2 = (1 / 298.257223563) * (2 - 1 / 298.257223563)
M0 = A * (1 - E2)  # smallest meridional radius of curvature (at the equator), metres/radian
_GEOD = Geod(ellps="WGS84")
_EDGE = 1e-9  # relative widening of query boxes against rounding
Array = npt.NDArray[np.float64]


def scales(lat_deg: float, radius_m: float) -> tuple[float, float]:
    """(m, p): metres per radian of latitude / longitude, lower bounds within radius_m of lat."""
    band = radius_m / M0
    phi = math.radians(abs(lat_deg))
    lo, hi = max(0.0, phi - band), phi + band
    m = A * (1 - E2) / (1 - E2 * math.sin(lo) ** 2) ** 1.5
    p = A * math.cos(hi) if hi < math.pi / 2 else 0.0
    return m, max(p, 0.0)


def degree_radius(lats: Array, radii_m: Array) -> Array:
    """Per point, a radius in degrees of a lon/lat circle that contains the whole accuracy disc."""
    band = radii_m / M0
    hi = np.radians(np.abs(lats)) + band
    p = np.where(hi < math.pi / 2, A * np.cos(np.minimum(hi, math.pi / 2)), 0.0)
    k = np.minimum(p, M0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.degrees(np.where(k > 0, radii_m / k, np.inf))
    return np.where(radii_m == 0, 0.0, rho) * (1 + _EDGE)


def _uncovered(lo: float, hi: float, cover: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Parts of [lo, hi] not covered by the intervals in ``cover``."""
    out, at = [], lo
    for c0, c1 in sorted(cover):
        if c1 <= at or c0 >= hi:
            continue
        if c0 > at:
            out.append((at, c0))
        at = max(at, c1)
    if at < hi:
        out.append((at, hi))
    return out


def _segments(geometry: shapely.Geometry) -> Array:
    """Real border segments as an (n, 4) array x0, y0, x1, y1 (artificial edges dropped).

    An edge on the ±180° meridian is artificial where the zone has an edge on the opposite
    meridian over the same latitudes (the zone continues there); the uncovered rest stays border.
    """
    rows = [np.empty((0, 4))]
    for ring in shapely.get_parts(shapely.boundary(geometry)):
        c = shapely.get_coordinates(ring)
        rows.append(np.column_stack([c[:-1], c[1:]]))
    segs = np.concatenate(rows)
    x0, y0, x1, y1 = segs.T
    drop = ((np.abs(y0) == 90) & (y0 == y1)) | ((x0 == x1) & (y0 == y1))
    meridian = (np.abs(x0) == 180) & (x0 == x1) & ~drop
    intervals = {
        side: [(min(a, b), max(a, b)) for a, b in zip(y0[meridian & (x0 == side)],
                                                     y1[meridian & (x0 == side)], strict=True)]
        for side in (-180.0, 180.0)
    }  # fmt: skip
    extra = []
    for i in np.flatnonzero(meridian):
        lo, hi = sorted((float(y0[i]), float(y1[i])))
        extra += [(x0[i], a, x0[i], b) for a, b in _uncovered(lo, hi, intervals[-x0[i]])]
    kept = segs[~(drop | meridian)]
    if extra:
        kept = np.concatenate([kept, np.array(extra, dtype=np.float64)])
    return np.ascontiguousarray(kept)


_SCAN_LIMIT = 2048  # up to this many segments a numpy scan beats an STRtree query


def _nearest2(
    ax: Array, ay: Array, sdx: Array, sdy: Array, kx: float, ky: float
) -> tuple[Array, Array]:
    """Squared distances from the origin to segments (a, a + sd) in a plane scaled by kx, ky.

    Also returns t, the position of each nearest point along its segment (0..1).
    """
    kx2, ky2 = kx * kx, ky * ky
    t = ax * sdx
    t *= -kx2
    tmp = ay * sdy
    tmp *= ky2
    t -= tmp
    den = sdx * sdx
    den *= kx2
    tmp = sdy * sdy
    tmp *= ky2
    den += tmp
    den += 1e-300  # a segment degenerate in this plane (pole scale): t = 0, no NaN
    t /= den
    np.clip(t, 0.0, 1.0, out=t)
    ex = t * sdx
    ex += ax
    ex *= ex
    ex *= kx2
    ey = t * sdy
    ey += ay
    ey *= ey
    ey *= ky2
    ex += ey
    return ex, t


class Border:
    """A zone's real border: segment arrays (degrees) and an STRtree over the segments."""

    def __init__(self, geometry: shapely.Geometry) -> None:
        s = self.segments = _segments(geometry)
        self.x0, self.y0 = s[:, 0].copy(), s[:, 1].copy()
        self.dx, self.dy = s[:, 2] - s[:, 0], s[:, 3] - s[:, 1]
        self.lines = shapely.multilinestrings(shapely.linestrings(s.reshape(-1, 2, 2)))
        shapely.prepare(self.lines)
        self.tree = shapely.STRtree(shapely.linestrings(s.reshape(-1, 2, 2)))
        self.half_dx = self.dx / 2
        self.mid = self.x0 + self.half_dx
        xs = np.concatenate([s[:, 0], s[:, 2]])
        self.xrange = (float(xs.min()), float(xs.max())) if len(xs) else (0.0, 0.0)

    def _deltas(self, lat: float, lon: float, radius_m: float) -> tuple[Array, Array, Array, Array]:
        """Segment starts relative to (lat, lon) in degrees, longitudes wrapped to the nearest side.

        Above ``_SCAN_LIMIT`` segments only those within ``radius_m`` of the point are returned
        (STRtree query of a box that holds the lower-bound ellipse).
        """
        if len(self.segments) > _SCAN_LIMIT and radius_m < math.inf:
            m, p = scales(lat, radius_m)
            dlat = math.degrees(radius_m / m) * (1 + _EDGE)
            dlon = math.degrees(radius_m / p) * (1 + _EDGE) if p > 0 else 360.0
            boxes = [shapely.box(lon - dlon + k, lat - dlat, lon + dlon + k, lat + dlat)
                     for k in (-360.0, 0.0, 360.0)]  # fmt: skip
            idx = np.unique(np.concatenate([self.tree.query(b) for b in boxes]))
            mid, half, y0 = self.mid[idx], self.half_dx[idx], self.y0[idx]
            sdx, sdy = self.dx[idx], self.dy[idx]
        else:
            mid, half, y0, sdx, sdy = self.mid, self.half_dx, self.y0, self.dx, self.dy
        ax = mid - lon
        if self.xrange[0] < lon - 180.0 or self.xrange[1] > lon + 180.0:
            # wrap each segment by its midpoint (segments span < 180°, checked at load)
            ax += 180.0
            np.remainder(ax, 360.0, out=ax)
            ax -= 180.0
        ax -= half
        return ax, y0 - lat, sdx, sdy

    def lower_bound_m(self, lat: float, lon: float, radius_m: float) -> float:
        """Lower bound of the geodesic distance to the border if it is within radius_m, else inf.

        A finite value is <= the true distance; inf means no border point lies within radius_m.
        (Segments beyond radius_m cannot lower the minimum below radius_m: outside the band
        their scaled distance already exceeds it, so scanning all of them is exact.)
        """
        ax, ay, sdx, sdy = self._deltas(lat, lon, radius_m)
        if ax.size == 0:
            return math.inf
        m, p = scales(lat, radius_m)
        d2, _ = _nearest2(ax, ay, sdx, sdy, math.radians(p), math.radians(m))
        d = math.sqrt(float(d2.min()))
        return d if d <= radius_m * (1 + _EDGE) else math.inf

    def distance_m(self, lat: float, lon: float, *, need: float = math.inf) -> float:
        """Lower bound of the geodesic distance to the border (inf if there is none).

        One scan in the local plane of scales (m0, p0) = ``scales(lat, 0)`` finds the nearest
        segment and its distance d0; the geodesic distance R to that border point bounds the true
        distance from above. With (mR, pR) = ``scales(lat, R)`` every segment's band-R distance is
        at least c = min(mR / m0, pR / p0) times its local one, so ``c * d0`` is a lower bound
        (rescanned with the band scales when c is below 0.75 and ``c * d0`` does not exceed
        ``need``: the caller's accuracy radius, so the decision is as tight as the rescan).
        """
        if len(self.segments) == 0:
            return math.inf
        m0, p0 = scales(lat, 0.0)
        if len(self.segments) > _SCAN_LIMIT:
            point = shapely.points(lon, lat)
            j = int(self.tree.query_nearest(point)[0])
            t = float(shapely.line_locate_point(self.tree.geometries[j], point, normalized=True))
            qx, qy = self.x0[j] + t * self.dx[j], self.y0[j] + t * self.dy[j]
            d0 = 0.0  # unknown here: use the rescan below
        else:
            ax, ay, sdx, sdy = self._deltas(lat, lon, math.inf)
            d2, tt = _nearest2(ax, ay, sdx, sdy, math.radians(p0), math.radians(m0))
            j = int(np.argmin(d2))
            d0 = math.sqrt(float(d2[j]))
            qx, qy = lon + ax[j] + tt[j] * sdx[j], lat + ay[j] + tt[j] * sdy[j]
        _, _, dist = _GEOD.inv(lon, lat, float(qx), float(qy))
        upper = float(dist) * (1 + 1e-9) + 1e-6  # the true distance to one border point
        m_r, p_r = scales(lat, upper)
        c = min(m_r / m0, p_r / p0) if p0 > 0 else m_r / m0
        if c >= 0.75 or c * d0 > need:
            return min(c * d0, upper)
        return min(self.lower_bound_m(lat, lon, upper), upper)
