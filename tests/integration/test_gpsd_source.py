"""GNSS sources against real parts: gpsd fed by gpsfake, a pyserial loopback port, a file.

gpsfake (Debian gpsd-clients) runs a real gpsd on a free loopback port and feeds it a capture
through a pty; it is run with Debian's /usr/bin/python3, which has the ``gps`` module.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from agent.gnss import (
    FileReplaySource,
    GpsdSky,
    GpsdSource,
    GpsdTpv,
    SerialSource,
    parse_gpsd_report,
)
from geoattest.dev.procs import free_port
from geoattest.errors import GnssUnavailable
from geofence.epochs import fixes_from_lines
from tests.paths import vector

GPSFAKE = shutil.which("gpsfake")
SYSTEM_PYTHON = "/usr/bin/python3"
BT451 = "nmea/bt451.log"


@contextlib.contextmanager
def gpsfake(capture: Path, cycle_s: float = 0.02) -> Iterator[int]:
    """A real gpsd on a free port, fed ``capture`` once by gpsfake; yields the port."""
    if GPSFAKE is None or not Path(SYSTEM_PYTHON).exists():
        pytest.skip("gpsfake binary absent (apt install gpsd gpsd-clients)")
    port = free_port()
    proc = subprocess.Popen(
        [SYSTEM_PYTHON, GPSFAKE, "-1", "-q", "-P", str(port), "-c", str(cycle_s), str(capture)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # gpsfake's gpsd child shares the group: stop both by pgid
    )
    try:
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:  # gpsfake ignores SIGTERM while feeding
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        if proc.stderr is not None:
            proc.stderr.close()


def _connect(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    pytest.fail(f"gpsd did not listen on {port}")


@pytest.mark.slow
def test_gpsd_relays_nmea_that_parses_into_fixes() -> None:
    capture = vector(BT451)
    sent = [ln.rstrip(b"\r") for ln in capture.read_bytes().split(b"\n") if ln.startswith(b"$")]
    with gpsfake(capture) as port:
        _connect(port)
        source = GpsdSource(port=port, timeout_s=3.0)
        got: list[bytes] = []
        with contextlib.suppress(GnssUnavailable):  # gpsfake keeps gpsd up after the file ends
            for line in source.lines():
                got.append(line)
                if line == sent[-1]:
                    break
        source.close()
    assert got, "gpsd relayed no NMEA"
    assert all(line in sent for line in got)  # verbatim receiver sentences, no gpsd JSON
    assert got[-1] == sent[-1]
    fixes, stats = fixes_from_lines(got)
    assert stats.rejected == 0
    assert len(fixes) >= 5
    assert all(55.78 < f.latitude < 55.80 and 23.56 < f.longitude < 23.58 for f in fixes)


@pytest.mark.slow
def test_gpsd_json_reports() -> None:
    with gpsfake(vector(BT451)) as port:
        _connect(port)
        source = GpsdSource(port=port, timeout_s=3.0)
        reports: list[GpsdTpv | GpsdSky] = []
        with contextlib.suppress(GnssUnavailable):
            for report in source.reports():
                reports.append(report)
                if isinstance(report, GpsdTpv) and report.mode == 3 and len(reports) > 5:
                    break
        source.close()
    tpv = [r for r in reports if isinstance(r, GpsdTpv) and r.mode == 3]
    assert tpv
    assert tpv[-1].lat is not None
    assert 55.78 < tpv[-1].lat < 55.80


def test_gpsd_unreachable() -> None:
    with pytest.raises(GnssUnavailable, match=r"gpsd at 127\.0\.0\.1"):
        next(GpsdSource(port=free_port(), timeout_s=1.0).lines())


def test_parse_gpsd_expected_output() -> None:
    """gpsd's own regression output for bt451 (bt451.log.chk) parses into typed reports."""
    lines = vector("nmea/bt451.log.chk").read_bytes().split(b"\n")
    reports = [r for r in map(parse_gpsd_report, lines) if r is not None]
    tpv = [r for r in reports if isinstance(r, GpsdTpv)]
    sky = [r for r in reports if isinstance(r, GpsdSky)]
    assert (len(tpv), len(sky)) == (52, 46)
    first_3d = next(r for r in tpv if r.mode == 3)
    assert first_3d.lat == 55.797018833
    assert first_3d.alt_msl_m == 37.0
    assert first_3d.time is not None
    assert first_3d.time.isoformat() == "2009-12-09T15:25:05+00:00"
    assert parse_gpsd_report(b"$GPRMC,,V,,,,,,,,,,N*53") is None


def test_file_replay_fast_and_paced() -> None:
    capture = vector(BT451)
    fast = list(FileReplaySource(capture).lines())
    assert fast == capture.read_bytes().split(b"\n")
    slept: list[float] = []
    paced = list(FileReplaySource(capture, paced=True, speed=2.0, sleep=slept.append).lines())
    assert paced == fast
    # 2 Hz receiver at double speed: 0.25 s steps; the 15:25 -> 14:33 join is not slept
    assert slept
    assert set(round(s, 3) for s in slept) <= {0.25, 0.0}
    assert sum(slept) < 10


def test_file_replay_missing_file(tmp_path: Path) -> None:
    with pytest.raises(GnssUnavailable):
        next(FileReplaySource(tmp_path / "nope.log").lines())


def test_serial_source_over_pyserial_loopback() -> None:
    source = SerialSource("loop://", timeout_s=0.05, max_idle_s=0.2)
    lines = vector(BT451).read_bytes().split(b"\n")[10:40]
    port = source._port  # the loopback device: what is written comes back
    assert isinstance(port, serial.SerialBase)
    port.write(b"\n".join(lines) + b"\n")
    got: list[bytes] = []

    def drain() -> None:
        for line in source.lines():
            got.append(line.rstrip(b"\n"))

    with pytest.raises(GnssUnavailable, match="no data"):
        drain()
    source.close()
    assert got == lines


def test_serial_source_bad_port() -> None:
    with pytest.raises(GnssUnavailable, match="cannot open"):
        SerialSource("/dev/nonexistent-gnss")
