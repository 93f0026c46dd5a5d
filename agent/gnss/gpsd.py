"""A gpsd client (JSON protocol on TCP 2947) and typed TPV/SKY reports.

:class:`GpsdSource` asks gpsd for the receiver's NMEA (``?WATCH={"enable":true,"nmea":true}``)
so the agent hashes and checks the same raw sentences as with a local receiver; gpsd's own
JSON lines (VERSION, DEVICES, WATCH) are skipped. :meth:`GpsdSource.reports` instead watches
in JSON mode and yields :class:`GpsdTpv` / :class:`GpsdSky`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass

from geoattest.errors import GnssUnavailable
from geofence import SourceKind

log = logging.getLogger(__name__)

GPSD_PORT = 2947
_MAX_LINE = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class GpsdTpv:
    """gpsd time-position-velocity report (``mode``: 0 unknown, 1 no fix, 2 = 2D, 3 = 3D)."""

    mode: int
    time: dt.datetime | None
    lat: float | None
    lon: float | None
    alt_msl_m: float | None
    epx_m: float | None
    epy_m: float | None
    speed_mps: float | None
    track_deg: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class GpsdSky:
    hdop: float | None
    pdop: float | None
    satellites_used: int | None
    cn0_dbhz: tuple[float, ...]


def _num(doc: dict[str, object], key: str) -> float | None:
    v = doc.get(key)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _time(text: object) -> dt.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)
    except ValueError:
        return None


def parse_gpsd_report(line: bytes | str) -> GpsdTpv | GpsdSky | None:
    """A TPV or SKY report from one gpsd JSON line; None for other classes or malformed lines."""
    try:
        doc = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    if doc.get("class") == "TPV":
        mode = doc.get("mode")
        return GpsdTpv(
            mode=mode if isinstance(mode, int) else 0,
            time=_time(doc.get("time")),
            lat=_num(doc, "lat"),
            lon=_num(doc, "lon"),
            alt_msl_m=_num(doc, "altMSL") if "altMSL" in doc else _num(doc, "alt"),
            epx_m=_num(doc, "epx"),
            epy_m=_num(doc, "epy"),
            speed_mps=_num(doc, "speed"),
            track_deg=_num(doc, "track"),
        )
    if doc.get("class") == "SKY":
        sats = doc.get("satellites")
        sats = [s for s in sats if isinstance(s, dict)] if isinstance(sats, list) else []
        cn0 = tuple(v for s in sats if (v := _num(s, "ss")) is not None)
        used = doc.get("uSat")
        return GpsdSky(
            hdop=_num(doc, "hdop"),
            pdop=_num(doc, "pdop"),
            satellites_used=used if isinstance(used, int) else None,
            cn0_dbhz=cn0,
        )
    return None


class GpsdSource:
    """Raw NMEA (or JSON reports) from a gpsd daemon; GnssUnavailable when it cannot be reached.

    gpsd decides what it relays: a gpsd fed by ``gpsfake`` replays a capture and still shows as
    ``gpsd`` here."""

    kind = SourceKind.GPSD

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = GPSD_PORT,
        *,
        timeout_s: float = 5.0,
        device: str | None = None,
    ) -> None:
        self._address = (host, port)
        self._timeout_s = timeout_s
        self._device = device
        self._sock: socket.socket | None = None

    def _watch(self, **flags: bool) -> Iterator[bytes]:
        watch: dict[str, object] = {"enable": True, **flags}
        if self._device:
            watch["device"] = self._device
        try:
            self._sock = socket.create_connection(self._address, timeout=self._timeout_s)
            self._sock.sendall(b"?WATCH=" + json.dumps(watch).encode() + b";\n")
            reader = self._sock.makefile("rb")
            while True:
                line = reader.readline(_MAX_LINE)
                if not line:
                    return
                yield line.rstrip(b"\r\n")
        except OSError as e:
            raise GnssUnavailable(f"gpsd at {self._address[0]}:{self._address[1]}: {e}") from e
        finally:
            self.close()

    def lines(self) -> Iterator[bytes]:
        """NMEA sentences as gpsd relays them from the receiver."""
        for line in self._watch(nmea=True):
            if line.startswith(b"{"):
                if b'"class":"ERROR"' in line:
                    raise GnssUnavailable(f"gpsd error: {line[:200]!r}")
                continue  # VERSION / DEVICES / WATCH banners
            yield line

    def reports(self) -> Iterator[GpsdTpv | GpsdSky]:
        """gpsd's own TPV and SKY reports (JSON watch mode)."""
        for line in self._watch(json=True):
            report = parse_gpsd_report(line)
            if report is not None:
                yield report

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
