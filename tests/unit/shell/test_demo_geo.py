"""The demo geography: the shipped files are what the script makes, every track passes the
plausibility checks when replayed live, and each site gets the zone decision it is made for."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from geoattest.dev.demo_geo import AGENT_SITES, DEMO_DIR, SITES, TELEPORT_SITE, write_demo
from geofence.epochs import fixes_from_lines
from geofence.nmea import split_lines
from geofence.plausibility import LocationPolicy, check_fix
from geofence.restamp import epochs, restamped
from geofence.zones import ZoneDecision, load_zones

NOW = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC)


def test_the_shipped_files_are_the_scripts_output(tmp_path: Path) -> None:
    for path in write_demo(tmp_path):
        shipped = DEMO_DIR / path.relative_to(tmp_path)
        assert shipped.read_bytes() == path.read_bytes(), f"run deploy/make-demo-geo: {shipped}"


def test_every_track_replayed_live_is_plausible_and_decided_as_designed() -> None:
    zones = load_zones((DEMO_DIR / "zones.geojson").read_text())
    decisions = {}
    for site in SITES:
        cut = epochs(split_lines((DEMO_DIR / "tracks" / f"{site.name}.nmea").read_bytes()))
        lines = [
            restamped(line, NOW + dt.timedelta(seconds=i)) for i, epoch in enumerate(cut)
            for line in epoch
        ]  # fmt: skip
        fixes, _ = fixes_from_lines(lines)
        assert len(fixes) == len(cut) == 60, site.name
        for index in range(1, len(fixes)):
            now = NOW + dt.timedelta(seconds=index, milliseconds=500)
            result = check_fix(
                fixes[index], fixes[max(0, index - 8) : index], LocationPolicy(), now
            )
            assert not result.failures, (site.name, index, result.failures)
        matches = zones.match(fixes[-1].latitude, fixes[-1].longitude,
                              fixes[-1].horizontal_accuracy_m or 0.0)  # fmt: skip
        decisions[site.name] = {m.verdict.decision for m in matches} or {ZoneDecision.OUTSIDE}
    assert decisions["border"] == {ZoneDecision.UNCERTAIN}
    assert decisions[TELEPORT_SITE] == {ZoneDecision.OUTSIDE}
    assert all(decisions[name] == {ZoneDecision.INSIDE} for name in AGENT_SITES if name != "border")
