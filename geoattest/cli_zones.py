"""``geoattest zones``: check a position against a zones file, for humans.

Exit codes of ``zones check`` (the shell's one table, ``geoattest.cli.EXIT_TABLE``):

* 0: inside a zone (the whole accuracy disc is inside it);
* 1: usage error (bad option values, NaN or infinite numbers included);
* 2: outside every zone (or outside ``--zone``);
* 3: the zones file is unreadable or invalid (the message names the feature and the reason, and
  says to add ``--repair`` when the polygon is one ``make_valid`` can repair);
* 4: uncertain (the accuracy disc crosses a zone border; never counts as inside).
"""

from __future__ import annotations

import math
from pathlib import Path

import click

from geoattest.cli import EXIT_DONE, EXIT_FINDINGS, EXIT_REFUSED, EXIT_UNREADABLE
from geoattest.cli_types import FiniteFloatRange
from geoattest.errors import NotFound, ZoneGeometryInvalid, ZoneInvalid
from geofence.zones import ZoneDecision, ZoneSet, ZoneVerdict, load_zones

EXIT_INSIDE, EXIT_UNCERTAIN, EXIT_OUTSIDE, EXIT_INVALID = (
    EXIT_DONE, EXIT_FINDINGS, EXIT_REFUSED, EXIT_UNREADABLE
)  # fmt: skip
MAX_ACCURACY_M = 20_037_508.0  # half the equator: a larger radius means nothing


def _metres(value: float) -> str:
    if math.isinf(value):
        return "no border"
    return f"{value / 1000:.3f} km" if value >= 10_000 else f"{value:.1f} m"


def _line(zones: ZoneSet, verdict: ZoneVerdict) -> str:
    zone = zones.zone(verdict.zone_id)
    return (
        f"{verdict.decision.value:9} {zone.id} ({zone.name}): "
        f"border at least {_metres(verdict.distance_to_border_m)} away"
    )


@click.group("zones")
def zones() -> None:
    """Geofence zones (GeoJSON Polygon/MultiPolygon features)."""


@zones.command("check")
@click.argument("zones_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--lat", type=FiniteFloatRange(-90, 90), required=True, help="Latitude, degrees.")
@click.option("--lon", type=FiniteFloatRange(-180, 180), required=True, help="Longitude, degrees.")
@click.option(
    "--accuracy", type=FiniteFloatRange(0, MAX_ACCURACY_M), default=0.0, show_default=True,
    help="Horizontal accuracy radius, metres (at most half the Earth's circumference).",
)  # fmt: skip
@click.option("--zone", "zone_id", default=None, help="Check this zone id only.")
@click.option(
    "--repair", is_flag=True, help="Repair invalid polygons (make_valid) and report them."
)
def check(
    zones_file: Path, lat: float, lon: float, accuracy: float, zone_id: str | None, repair: bool
) -> None:
    """Decide inside / outside / uncertain for a position with an accuracy radius."""
    try:
        zone_set = load_zones(zones_file.read_text(encoding="utf-8"), repair=repair)
    except ZoneGeometryInvalid as e:
        click.echo(f"error: {zones_file}: {e}; run again with --repair to repair it", err=True)
        raise SystemExit(EXIT_INVALID) from e
    except (ZoneInvalid, UnicodeDecodeError) as e:
        click.echo(f"error: {zones_file}: {e}", err=True)
        raise SystemExit(EXIT_INVALID) from e
    for fixed in zone_set.repaired:
        click.echo(f"repaired {fixed.zone_id} ({fixed.name}): was {fixed.reason}", err=True)
    click.echo(f"position {lat:.6f}, {lon:.6f} +/- {accuracy:g} m")
    if zone_id is not None:
        try:
            verdicts = [zone_set.decide(zone_id, lat, lon, accuracy)]
        except NotFound as e:
            raise click.BadParameter(str(e), param_hint="--zone") from e
    else:
        verdicts = [m.verdict for m in zone_set.match(lat, lon, accuracy)]
    shown = [v for v in verdicts if v.decision is not ZoneDecision.OUTSIDE or zone_id]
    for verdict in shown:
        click.echo(_line(zone_set, verdict))
    decisions = {v.decision for v in verdicts}
    if ZoneDecision.INSIDE in decisions:
        raise SystemExit(EXIT_INSIDE)
    if ZoneDecision.UNCERTAIN in decisions:
        raise SystemExit(EXIT_UNCERTAIN)
    if not shown:
        click.echo(f"outside all {len(zone_set)} zones")
    raise SystemExit(EXIT_OUTSIDE)
