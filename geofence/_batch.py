"""Vectorised zone decisions for many points (private to zones.py).

A coarse grid over the zone's bounding box stores, per cell, whether the cell is wholly inside,
wholly outside or crossed by the border, and a lower bound (in degrees) of the distance from any
point of the cell to the border. A point whose accuracy disc fits in a circle of
:func:`degree_radius` degrees smaller than its cell's clearance is decided from the grid alone.
The rest get an exact point-in-polygon test and a vectorised ``dwithin`` against the border;
only points with the border inside that circle (or near the antimeridian or a pole) fall back to
the single-point lower bound of :mod:`geofence._border`. Every shortcut is conservative, so a
batch decision equals the single-point decision for the same input.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import shapely

from geofence._border import Border, degree_radius

OUTSIDE, INSIDE, UNCERTAIN = 0, 1, 2
_MIXED = 2
GRID = 64
Codes = npt.NDArray[np.int8]
Array = npt.NDArray[np.float64]


NUMERIC_SLACK_DEG = 1e-9


class BatchIndex:
    """The per-zone grid; built once per zone on first use (tens of milliseconds)."""

    def __init__(self, geometry: shapely.Geometry, border: Border) -> None:
        self.geometry = geometry
        self.border = border
        x0, y0, x1, y1 = shapely.bounds(geometry)
        self.bounds = (float(x0), float(y0), float(x1), float(y1))
        self.cw, self.ch = (x1 - x0) / GRID, (y1 - y0) / GRID
        gx = x0 + self.cw * np.arange(GRID)
        gy = y0 + self.ch * np.arange(GRID)
        cx, cy = np.meshgrid(gx, gy)  # [iy, ix]
        boxes = shapely.box(cx, cy, cx + self.cw, cy + self.ch).ravel()
        if len(border.segments):
            _, dist = border.tree.query_nearest(boxes, return_distance=True, all_matches=False)
            # the tree holds segment bounding boxes: distance to a bbox <= distance to its segment
        else:
            dist = np.full(boxes.shape, np.inf)
        centre = shapely.intersects_xy(
            geometry, (cx + self.cw / 2).ravel(), (cy + self.ch / 2).ravel()
        )
        state = np.where(dist > 0, np.where(centre, INSIDE, OUTSIDE), _MIXED)
        self.state = state.astype(np.int8).reshape(GRID, GRID)
        self.clearance = np.asarray(dist, dtype=np.float64).reshape(GRID, GRID)

    def decide(
        self, lats: Array, lons: Array, radii_m: Array
    ) -> tuple[Codes, npt.NDArray[np.intp]]:
        """Codes for all points, and the indices still needing the exact single-point test."""
        x0, y0, x1, y1 = self.bounds
        # A point within floating-point noise of the border is on it: uncertain, as the exact
        # single-point lower bound also says (1e-9 degrees is about 0.1 mm).
        rho = np.maximum(degree_radius(lats, radii_m), NUMERIC_SLACK_DEG)
        ix = np.floor((lons - x0) / self.cw).astype(np.intp)
        iy = np.floor((lats - y0) / self.ch).astype(np.intp)
        in_box = (lons >= x0) & (lons <= x1) & (lats >= y0) & (lats <= y1)
        np.clip(ix, 0, GRID - 1, out=ix)
        np.clip(iy, 0, GRID - 1, out=iy)
        state = np.where(in_box, self.state[iy, ix], np.int8(OUTSIDE))
        gap = np.hypot(np.maximum(np.maximum(x0 - lons, lons - x1), 0.0),
                       np.maximum(np.maximum(y0 - lats, lats - y1), 0.0))  # fmt: skip
        clearance = np.where(in_box, self.clearance[iy, ix], gap)
        wraps = (lons - rho < -180.0) | (lons + rho > 180.0)
        # strict: a disc that touches the border (clearance == radius) is uncertain, as in decide()
        decided = (state != _MIXED) & (clearance > rho) & ~wraps
        codes = np.where(decided, state, np.int8(UNCERTAIN)).astype(np.int8)
        rest = np.flatnonzero(~decided)
        if rest.size == 0:
            return codes, rest
        inside = shapely.intersects_xy(self.geometry, lons[rest], lats[rest])
        near = wraps[rest] | shapely.dwithin(
            self.border.lines, shapely.points(lons[rest], lats[rest]), rho[rest]
        )
        codes[rest] = np.where(near, UNCERTAIN, np.where(inside, INSIDE, OUTSIDE))
        return codes, rest[near]
