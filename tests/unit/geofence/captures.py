"""Cached fixes of the real NMEA captures in tests/vectors/nmea (shared by these tests)."""

from __future__ import annotations

import functools

from geofence.epochs import fixes_from_lines
from geofence.fix import Fix
from geofence.nmea import ParseStats, split_lines
from tests.paths import vector

CAPTURES = (
    "april6_2019.log",
    "bt451.log",
    "furuno_gl_ga.log",
    "garmin-geko201.log",
    "haicom-305N.log",
    "nl2008u.log",
    "quectel-eg25-g.log",
    "skytraq-err.log",
    "st-teseo-liv4f.log",
    "ublox-neo-m9n-nmea.log",
)


@functools.cache
def capture(name: str) -> tuple[tuple[Fix, ...], ParseStats]:
    fixes, stats = fixes_from_lines(split_lines(vector(f"nmea/{name}").read_bytes()))
    return tuple(fixes), stats


def fixes(name: str) -> tuple[Fix, ...]:
    return capture(name)[0]
