"""``agent.gnss.open_source``: the ``--gnss`` / ``gnss_source`` spellings and their refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.gnss import (
    FileReplaySource,
    GpsdSource,
    SerialSource,
    SourceSpec,
    open_source,
    parse_source_spec,
)
from geoattest.errors import ConfigurationError, GnssUnavailable
from tests.paths import vector


def test_file_replay_fast_reads_the_capture() -> None:
    path = vector("nmea/april6_2019.log")
    source = open_source(f"file:{path}")
    assert isinstance(source, FileReplaySource)
    lines = list(source.lines())
    assert sum(line.startswith(b"$GPRMC") for line in lines) == 3


def test_file_replay_paced_sleeps_between_epochs(tmp_path: Path) -> None:
    capture = tmp_path / "two.log"
    capture.write_bytes(
        b"$GPRMC,120000.00,A,4800.0,N,00800.0,E,0,0,010124,,,A*00\n"
        b"$GPRMC,120001.00,A,4800.0,N,00800.0,E,0,0,010124,,,A*00\n"
    )
    source = open_source(f"file:{capture}?paced&speed=1000")
    assert isinstance(source, FileReplaySource)
    assert len(list(source.lines())) == 3  # two sentences and the empty tail


def test_gpsd_host_and_port() -> None:
    assert isinstance(open_source("gpsd:127.0.0.1:2947"), GpsdSource)
    assert isinstance(open_source("gpsd:localhost"), GpsdSource)
    assert isinstance(open_source("gpsd:[::1]:2948"), GpsdSource)


def test_serial_loop_url_with_baud() -> None:
    source = open_source("serial:loop://?baud=115200")
    assert isinstance(source, SerialSource)
    source.close()


def test_serial_port_that_does_not_exist_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(GnssUnavailable, match="cannot open"):
        open_source(f"serial:{tmp_path / 'ttyNONE'}")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "is not file:PATH"),
        ("/dev/ttyACM0", "is not file:PATH"),
        ("usb:/dev/ttyACM0", "is not file:PATH"),
        ("file:", "is not file:PATH"),
        ("file:?paced", "names no file path"),
        ("file:x.log?pace", "unknown option"),
        ("file:x.log?speed=fast", "speed 'fast' is not a number"),
        ("file:x.log?speed=0", "speed must be positive"),
        ("serial:/dev/ttyACM0?baud=fast", "baud 'fast' is not a number"),
        ("serial:/dev/ttyACM0?baud=9600.5", "positive integer"),
        ("serial:/dev/ttyACM0?parity=N", "unknown option"),
        ("gpsd::2947", "names no gpsd host"),
        ("gpsd:host:99999", "not 1-65535"),
        ("gpsd:host:port", "not 1-65535"),
        ("gpsd:::1:2947", "in brackets"),
        ("gpsd:[::1", "bracketed"),
    ],
)
def test_bad_specs_are_configuration_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        open_source(spec)


def test_parse_without_opening() -> None:
    assert parse_source_spec("serial:/dev/ttyNONE?baud=4800") == SourceSpec(
        kind="serial", target="/dev/ttyNONE", baudrate=4800
    )
    assert parse_source_spec("file:a.log?paced") == SourceSpec(
        kind="file", target="a.log", paced=True
    )
    assert parse_source_spec("gpsd:gps.local") == SourceSpec(
        kind="gpsd", target="gps.local", port=2947
    )
