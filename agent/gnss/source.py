"""The GNSS source protocol, NMEA file replay and a serial-port source."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import serial

from geoattest.errors import GnssUnavailable
from geofence import SourceKind

log = logging.getLogger(__name__)

_TIMED = {b"RMC": 0, b"GGA": 0, b"GNS": 0, b"GST": 0, b"ZDA": 0, b"GLL": 4}


class GnssSource(Protocol):
    """Yields raw NMEA lines (bytes, line ending optional) until exhausted or closed.

    ``kind`` says how the lines are read; it is signed into the location evidence, and a
    verifier policy may refuse some kinds (``file`` in production)."""

    @property
    def kind(self) -> SourceKind: ...

    def lines(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


def _seconds_of_day(line: bytes) -> float | None:
    """Receiver time of a timed sentence in seconds of the day, for pacing only."""
    start = line.rfind(b"$")
    if start < 0 or len(line) < start + 7:
        return None
    field = _TIMED.get(line[start + 3 : start + 6])
    if field is None:
        return None
    parts = line[start:].split(b"*", 1)[0].split(b",")
    text = parts[field + 1] if len(parts) > field + 1 else b""
    try:
        return int(text[0:2]) * 3600 + int(text[2:4]) * 60 + float(text[4:])
    except ValueError:
        return None


class FileReplaySource:
    """Replays a capture file: as fast as possible, or paced by the receiver's timestamps.

    Pacing sleeps for the receiver-time gap between timed sentences, divided by ``speed``; gaps
    that are negative (time going back) or above ``max_gap_s`` are not slept.
    """

    kind = SourceKind.FILE

    def __init__(
        self,
        path: Path,
        *,
        paced: bool = False,
        speed: float = 1.0,
        max_gap_s: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._path, self._paced, self._speed = path, paced, speed
        self._max_gap_s, self._sleep = max_gap_s, sleep
        self._closed = False

    def lines(self) -> Iterator[bytes]:
        try:
            data = self._path.read_bytes()
        except OSError as e:
            raise GnssUnavailable(f"cannot read NMEA capture {self._path}: {e}") from e
        previous: float | None = None
        for line in data.split(b"\n"):
            if self._closed:
                return
            if self._paced and (now := _seconds_of_day(line)) is not None:
                if previous is not None and 0 < now - previous <= self._max_gap_s:
                    self._sleep((now - previous) / self._speed)
                previous = now
            yield line

    def close(self) -> None:
        self._closed = True


class SerialSource:
    """NMEA from a serial port (``/dev/ttyUSB0``, ``/dev/ttyACM0``) or any pyserial URL.

    Raises GnssUnavailable when the port cannot be opened, fails, or stays silent for
    ``max_idle_s`` seconds.
    """

    kind = SourceKind.SERIAL

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 9600,
        timeout_s: float = 1.0,
        max_idle_s: float = 10.0,
    ) -> None:
        self._url, self._max_idle_s = url, max_idle_s
        try:
            self._port = serial.serial_for_url(url, baudrate=baudrate, timeout=timeout_s)
        except (serial.SerialException, ValueError) as e:
            raise GnssUnavailable(f"cannot open GNSS serial port {url}: {e}") from e

    def lines(self) -> Iterator[bytes]:
        idle_since = time.monotonic()
        while self._port.is_open:
            try:
                line = self._port.readline(1024)
            except (serial.SerialException, OSError) as e:
                raise GnssUnavailable(f"GNSS serial port {self._url} failed: {e}") from e
            if line:
                idle_since = time.monotonic()
                yield line
            elif time.monotonic() - idle_since > self._max_idle_s:
                raise GnssUnavailable(f"no data from {self._url} for {self._max_idle_s} s")

    def close(self) -> None:
        self._port.close()
