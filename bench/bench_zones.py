"""Zone decisions/s against the Natural Earth countries vs raw ``shapely.contains_xy``.

Points: for each of the 177 countries, uniform in its bounding box (so about half inside, some
near borders), accuracy uniform in 3-50 m. Batch: ``ZoneSet.decide_many`` per zone vs
``shapely.contains_xy`` on the same prepared geometry and points, in the same run. Single:
``ZoneSet.decide`` one point at a time (p50/p99 latency) vs ``contains_xy`` one at a time.

Run: ``.venv/bin/python bench/bench_zones.py`` (about 20 s).
"""

from __future__ import annotations

import gc
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


if __name__ == "__main__":
    main()
