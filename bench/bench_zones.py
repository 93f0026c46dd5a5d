"""Zone decisions/s against the Natural Earth countries vs raw ``shapely.contains_xy``.

Points: for each of the 177 countries, uniform in its bounding box (so about half inside, some
near borders), accuracy uniform in 3-50 m. Batch: ``ZoneSet.decide_many`` per zone vs
``shapely.contains_xy`` on the same prepared geometry and points, in the same run. Single:
``ZoneSet.decide`` one point at a time (p50/p99 latency) vs ``contains_xy`` one at a time.
Tracks: per country a stationary receiver at a point inside it (``point_on_surface``) whose
fixes scatter by up to 10 m, ``TRACK_FIXES`` fixes each, decided one after another with
``ZoneSet.decide_near`` as the verifier's rounds do (the first fix of each is decided in full),
vs ``contains_xy`` of the same points.

Run: ``.venv/bin/python bench/bench_zones.py`` (about 20 s).
"""

from __future__ import annotations

import gc
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import shapely

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geofence.zones import load_zones

VECTORS = Path(__file__).resolve().parents[1] / "tests" / "vectors"
ZONES = VECTORS / "zones" / "ne_110m_admin_0_countries.geojson"
BATCH_PER_ZONE = 20_000
SINGLE_PER_ZONE = 40
TRACK_FIXES = 200  # a node's first fix after a verifier start is 1 of 43,200 a day at 2 s


def main() -> None:
    t0 = time.perf_counter()
    zones = load_zones(ZONES.read_text(encoding="utf-8"), repair=True)
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(2024)
    cases = []
    for z in zones.zones:
        x0, y0, x1, y1 = shapely.bounds(z.geometry)
        n = BATCH_PER_ZONE
        cases.append((z, rng.uniform(y0, y1, n), rng.uniform(x0, x1, n), rng.uniform(3, 50, n)))

    t0 = time.perf_counter()
    for z, la, lo, acc in cases:  # first use builds each zone's grid
        zones.decide_many(la[:1], lo[:1], acc[:1], z.id)
    build_s = time.perf_counter() - t0

    gc.disable()
    ours = raw = 0.0
    for _ in range(3):
        for z, la, lo, acc in cases:
            t = time.perf_counter()
            shapely.contains_xy(z.geometry, lo, la)
            raw += time.perf_counter() - t
            t = time.perf_counter()
            zones.decide_many(la, lo, acc, z.id)
            ours += time.perf_counter() - t
    points = 3 * BATCH_PER_ZONE * len(cases)

    lat_us: list[float] = []
    raw_us: list[float] = []
    for z, la, lo, acc in cases:
        for j in range(SINGLE_PER_ZONE):
            a, b, c = float(la[j]), float(lo[j]), float(acc[j])
            t = time.perf_counter()
            shapely.contains_xy(z.geometry, b, a)
            raw_us.append((time.perf_counter() - t) * 1e6)
            t = time.perf_counter()
            zones.decide(z.id, a, b, c)
            lat_us.append((time.perf_counter() - t) * 1e6)
    track_us: list[float] = []
    cold_us: list[float] = []
    track_raw_us: list[float] = []
    for z in zones.zones:
        centre = shapely.point_on_surface(z.geometry)
        lat0, lon0 = float(centre.y), float(centre.x)
        dlat = rng.uniform(-10, 10, TRACK_FIXES) / 111_000
        dlon = rng.uniform(-10, 10, TRACK_FIXES) / (
            111_000 * max(0.01, math.cos(math.radians(lat0)))
        )
        accuracy = rng.uniform(3, 50, TRACK_FIXES)
        near = None
        for j in range(TRACK_FIXES):
            a, b = lat0 + float(dlat[j]), lon0 + float(dlon[j])
            t = time.perf_counter()
            shapely.contains_xy(z.geometry, b, a)
            track_raw_us.append((time.perf_counter() - t) * 1e6)
            t = time.perf_counter()
            _, near = zones.decide_near(z.id, a, b, float(accuracy[j]), near)
            spent = (time.perf_counter() - t) * 1e6
            (cold_us if j == 0 else track_us).append(spent)
    gc.enable()

    def pct(xs: list[float], q: int) -> float:
        return float(np.percentile(xs, q))

    print(f"zones: {len(zones)} (load {load_s * 1000:.0f} ms, batch grids {build_s * 1000:.0f} ms)")
    print(f"batch  ours {points / ours / 1e6:.2f} M decisions/s   raw contains_xy "
          f"{points / raw / 1e6:.2f} M points/s   ratio {raw / ours:.2f}x")  # fmt: skip
    rate = 1e6 / statistics.fmean(lat_us)
    ratio = statistics.fmean(raw_us) / statistics.fmean(lat_us)
    print(f"single ours p50 {pct(lat_us, 50):.1f} us  p99 {pct(lat_us, 99):.1f} us  ({rate:,.0f}/s)"
          f"   raw contains_xy p50 {pct(raw_us, 50):.1f} us   ratio {ratio:.2f}x")  # fmt: skip
    every = track_us + cold_us
    raw50 = pct(track_raw_us, 50)
    print(f"tracks ours p50 {pct(every, 50):.1f} us  p99 {pct(every, 99):.1f} us over "
          f"{len(every)} fixes (after the first: p99 {pct(track_us, 99):.1f} us; "
          f"{len(cold_us)} first fixes: p50 {pct(cold_us, 50):.1f} us, "
          f"p99 {pct(cold_us, 99):.1f} us)   raw contains_xy p50 {raw50:.1f} us   "
          f"p99/raw p50 {pct(every, 99) / raw50:.1f}x (goal <= 10x)")  # fmt: skip


if __name__ == "__main__":
    main()
