"""``file:PATH?live``: epochs restamped to the clock, back and forth, the file re-read when it
changes, silence when it is gone (a real file, a fake clock only for the time stamps)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.gnss.live import LiveReplaySource
from agent.gnss.spec import open_source, parse_source_spec
from geoattest.dev.demo_geo import SITES, track
from geoattest.errors import ConfigurationError
from geofence import SourceKind
from geofence.epochs import fixes_from_lines

START = dt.datetime(2026, 12, 2, 8, 30, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now


def _site(name: str) -> bytes:
    return track(next(site for site in SITES if site.name == name))


def _take_epochs(lines: Iterator[bytes], clock: Clock, count: int) -> list[bytes]:
    """``count`` epochs' lines; the clock moves a second per epoch (seven lines each)."""
    taken: list[bytes] = []
    for _ in range(count):
        taken += [next(lines) for _ in range(7)]
        clock.now += dt.timedelta(seconds=1)
    return taken


def test_epochs_are_stamped_now_and_the_track_turns_without_a_jump(tmp_path: Path) -> None:
    path = tmp_path / "track.nmea"
    path.write_bytes(_site("berlin-mitte"))
    clock = Clock()
    source = LiveReplaySource(path, period_s=0.0, clock=clock)
    assert source.kind is SourceKind.FILE
    fixes, _ = fixes_from_lines(_take_epochs(source.lines(), clock, 125))
    source.close()
    times = [fix.utc for fix in fixes]
    assert times[0] == START
    assert times == [START + dt.timedelta(seconds=i) for i in range(len(fixes))]
    # Forward over 60 epochs, then back: the 61st fix is the 59th position, never the 1st.
    assert (fixes[60].latitude, fixes[60].longitude) == (fixes[58].latitude, fixes[58].longitude)
    assert (fixes[120].latitude, fixes[120].longitude) == (fixes[2].latitude, fixes[2].longitude)


def test_a_changed_file_is_read_again_and_a_missing_one_is_silence(tmp_path: Path) -> None:
    path = tmp_path / "track.nmea"
    path.write_bytes(_site("berlin-mitte"))
    clock = Clock()
    source = LiveReplaySource(path, period_s=0.01, clock=clock)
    lines = source.lines()
    before, _ = fixes_from_lines(_take_epochs(lines, clock, 3))
    assert before[0].latitude == pytest.approx(52.52, abs=0.01)
    path.write_bytes(_site("paris"))
    _take_epochs(lines, clock, 1)  # the epoch under way when the file changed
    after, _ = fixes_from_lines(_take_epochs(lines, clock, 3))
    assert after[-1].latitude == pytest.approx(48.857, abs=0.01)
    _take_epochs(lines, clock, 1)  # the epoch under way
    path.unlink()
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.extend(lines), daemon=True)
    reader.start()
    reader.join(timeout=0.5)
    assert reader.is_alive()  # a silent receiver: waiting, not ended
    source.close()
    reader.join(timeout=5)
    assert not reader.is_alive()
    assert got == []  # not one line once the file was gone


def test_live_is_a_file_spec_of_its_own() -> None:
    assert parse_source_spec("file:/x.nmea?live").live
    assert isinstance(open_source("file:/x.nmea?live"), LiveReplaySource)
    with pytest.raises(ConfigurationError, match="real time"):
        parse_source_spec("file:/x.nmea?live&paced")
