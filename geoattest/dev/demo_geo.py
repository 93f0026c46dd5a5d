"""The demo geography of the local fleet: zone polygons and small NMEA tracks, made here.

``python -m geoattest.dev.demo_geo [DIR]`` (or ``deploy/make-demo-geo``) writes, into
``geoattest/dev/demo/`` by default:

- ``zones.geojson``: three demo zones (``berlin``, ``frankfurt``, ``munich``), simple polygons
  around the cities' centres, as the verifier's ``zones_file``;
- ``tracks/<name>.nmea``: one minute of a synthetic receiver per demo site, GGA, GSA, GSV, GST
  and RMC per epoch, that ``file:PATH?live`` replays at the current time (``agent.gnss.live``).

The tracks are made to pass the plausibility checks honestly: eight or more satellites with
C/N0 that differs per satellite and moves from epoch to epoch (``location_cn0_uniform``,
``location_frozen``), HDOP 0.9, an error estimate (GST) of 2 m per axis (a 5.7 m accuracy
disc), walking speed. ``border`` walks along the southern edge of ``berlin``: its accuracy disc
always crosses the border, so the zone decision is ``uncertain`` (never ``inside``). ``paris``
lies outside every zone, 880 km from Berlin: ``fleet tamper --teleport`` moves a node there.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent / "demo"
METRES_PER_DEGREE = 111_320.0

# (south, west, north, east) of each demo zone: rectangles, as a site's permit would draw them.
ZONES = {
    "berlin": (52.45, 13.25, 52.58, 13.50),
    "frankfurt": (50.07, 8.60, 50.15, 8.75),
    "munich": (48.10, 11.50, 48.18, 11.65),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Site:
    name: str
    lat: float
    lon: float
    altitude_m: float
    along_border: bool = False  # walk east-west on the given latitude instead of a circle


SITES = (
    Site(name="berlin-mitte", lat=52.5200, lon=13.4050, altitude_m=34.0),
    Site(name="frankfurt", lat=50.1109, lon=8.6821, altitude_m=112.0),
    Site(name="munich", lat=48.1372, lon=11.5756, altitude_m=519.0),
    Site(name="berlin-west", lat=52.5000, lon=13.3500, altitude_m=40.0),
    Site(name="border", lat=ZONES["berlin"][0], lon=13.4000, altitude_m=45.0, along_border=True),
    Site(name="paris", lat=48.8566, lon=2.3522, altitude_m=35.0),
)
# The fleet's agents take the sites in this order (edge-01 …); ``paris`` is the teleport target.
AGENT_SITES = ("berlin-mitte", "frankfurt", "munich", "berlin-west", "border")
TELEPORT_SITE = "paris"

EPOCHS = 60
_SATELLITES = (  # PRN, elevation, azimuth, C/N0 at rest
    (2, 67, 110, 45), (5, 45, 250, 42), (12, 30, 60, 38), (15, 22, 300, 35), (18, 55, 190, 40),
    (21, 15, 20, 31), (25, 72, 330, 47), (29, 35, 150, 36), (31, 12, 220, 29),
)  # fmt: skip
_SIGMA_M = 2.0  # GST 1-sigma error per axis


def zones_geojson() -> dict[str, object]:
    features = []
    for zone_id, (south, west, north, east) in ZONES.items():
        ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
        features.append(
            {
                "type": "Feature",
                "id": zone_id,
                "properties": {"id": zone_id, "name": f"demo zone {zone_id}"},
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            }
        )
    return {"type": "FeatureCollection", "features": features}


def track(site: Site) -> bytes:
    """One minute of NMEA at ``site`` (times from 12:00:00 on 2026-01-01; replays restamp)."""
    lines: list[str] = []
    for epoch in range(EPOCHS):
        lat, lon, course = _position(site, epoch)
        lines.extend(_epoch(site, epoch, lat, lon, course))
    return ("\r\n".join(lines) + "\r\n").encode()


def _position(site: Site, epoch: int) -> tuple[float, float, float]:
    """Walking: 40 m along the border and back, or a 20 m circle, 1.2-2 m/s."""
    scale = math.cos(math.radians(site.lat))
    if site.along_border:
        east_m = (epoch / (EPOCHS - 1)) * 40.0 - 20.0
        return site.lat, site.lon + east_m / (METRES_PER_DEGREE * scale), 90.0
    angle = 2 * math.pi * epoch / EPOCHS
    north_m, east_m = 20.0 * math.cos(angle), 20.0 * math.sin(angle)
    course = (math.degrees(angle) + 90.0) % 360.0
    return (
        site.lat + north_m / METRES_PER_DEGREE,
        site.lon + east_m / (METRES_PER_DEGREE * scale),
        course,
    )


def _epoch(site: Site, epoch: int, lat: float, lon: float, course: float) -> list[str]:
    hhmmss = f"12{epoch // 60:02d}{epoch % 60:02d}.00"
    lat_text = _degrees_minutes(abs(lat), 2) + ("," + ("N" if lat >= 0 else "S"))
    lon_text = _degrees_minutes(abs(lon), 3) + ("," + ("E" if lon >= 0 else "W"))
    altitude = site.altitude_m + 0.3 * math.sin(epoch / 7.0)
    prns = [prn for prn, *_ in _SATELLITES]
    used = ",".join(f"{prn:02d}" for prn in prns[:12]) + "," * (12 - len(prns[:12]))
    sentences = [
        f"GPGGA,{hhmmss},{lat_text},{lon_text},1,{len(prns):02d},0.9,{altitude:.1f},M,47.0,M,,",
        f"GPGSA,A,3,{used},1.6,0.9,1.3",
    ]
    groups = [_SATELLITES[i : i + 4] for i in range(0, len(_SATELLITES), 4)]
    for number, group in enumerate(groups, start=1):
        sats = ",".join(
            f"{prn:02d},{elevation:02d},{azimuth:03d},{_cn0(base, prn, epoch):02d}"
            for prn, elevation, azimuth, base in group
        )
        sentences.append(f"GPGSV,{len(groups)},{number},{len(_SATELLITES):02d},{sats}")
    sentences += [
        f"GPGST,{hhmmss},1.8,{_SIGMA_M:.1f},{_SIGMA_M:.1f},0.0,{_SIGMA_M:.1f},{_SIGMA_M:.1f},3.0",
        f"GPRMC,{hhmmss},A,{lat_text},{lon_text},{3.0:.2f},{course:.1f},010126,,,A",
    ]
    return [_sentence(body) for body in sentences]


def _cn0(base: int, prn: int, epoch: int) -> int:
    """C/N0 that wanders by up to 2 dB-Hz, differently per satellite."""
    return max(0, min(99, round(base + 2.0 * math.sin(epoch / 5.0 + prn))))


def _degrees_minutes(value: float, width: int) -> str:
    degrees = int(value)
    return f"{degrees:0{width}d}{(value - degrees) * 60:08.5f}"


def _sentence(body: str) -> str:
    checksum = functools.reduce(lambda a, b: a ^ b, body.encode(), 0)
    return f"${body}*{checksum:02X}"


def write_demo(directory: Path) -> list[Path]:
    """Write the zones and every site's track under ``directory``; the paths written."""
    (directory / "tracks").mkdir(parents=True, exist_ok=True)
    zones = directory / "zones.geojson"
    zones.write_text(json.dumps(zones_geojson(), indent=1) + "\n")
    written = [zones]
    for site in SITES:
        path = directory / "tracks" / f"{site.name}.nmea"
        path.write_bytes(track(site))
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("directory", nargs="?", type=Path, default=DEMO_DIR)
    for path in write_demo(parser.parse_args().directory):
        print(path)


if __name__ == "__main__":
    main()
