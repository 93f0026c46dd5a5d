"""``open_source(spec)``: the GNSS source named by the ``gnss_source`` setting (``--gnss``).

Spellings:

* ``file:PATH`` replays an NMEA capture as fast as it reads; ``file:PATH?paced`` at the
  receiver's own rate (``?paced&speed=2`` twice as fast); ``file:PATH?live`` one epoch a second
  restamped to now, back and forth, re-read when the file changes (``agent.gnss.live``). For
  tests and demos.
* ``serial:URL`` reads a receiver on a serial port or any pyserial URL (``serial:/dev/ttyACM0``,
  ``serial:rfc2217://host:port``), ``?baud=N`` sets the rate (default 9600).
* ``gpsd:HOST:PORT`` (or ``gpsd:HOST``, port 2947) watches gpsd for the receiver's raw NMEA;
  IPv6 hosts in brackets (``gpsd:[::1]:2947``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent.gnss.gpsd import GPSD_PORT, GpsdSource
from agent.gnss.live import LiveReplaySource
from agent.gnss.source import FileReplaySource, GnssSource, SerialSource
from geoattest.errors import ConfigurationError

__all__ = ["SourceSpec", "open_source", "parse_source_spec"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceSpec:
    """A parsed GNSS source spec: ``target`` is the file path, serial URL or gpsd host."""

    kind: Literal["file", "serial", "gpsd"]
    target: str
    paced: bool = False
    live: bool = False
    speed: float = 1.0
    baudrate: int = 9600
    port: int = GPSD_PORT


def parse_source_spec(spec: str) -> SourceSpec:
    """Parse ``spec`` without touching the receiver (see the module docstring).

    Raises ConfigurationError for a spec that does not parse (unknown kind, empty path, bad
    baud rate, port or option).
    """
    kind, sep, rest = spec.partition(":")
    if not sep or not rest or kind not in ("file", "serial", "gpsd"):
        raise ConfigurationError(
            f"GNSS source {spec!r} is not file:PATH[?paced], serial:URL[?baud=N] or "
            "gpsd:HOST[:PORT]"
        )
    if kind == "gpsd":
        host, port = _host_port(rest, spec)
        return SourceSpec(kind="gpsd", target=host, port=port)
    target, _, query = rest.partition("?")
    if not target:
        raise ConfigurationError(f"GNSS source {spec!r} names no {kind} path")
    options = _options(query, spec)
    if kind == "file":
        _only(options, {"paced", "speed", "live"}, spec)
        speed = _number(options.get("speed", "1"), "speed", spec)
        if speed <= 0:
            raise ConfigurationError(f"GNSS source {spec!r}: speed must be positive")
        live = "live" in options
        if live and ("paced" in options or "speed" in options):
            raise ConfigurationError(f"GNSS source {spec!r}: live replays in real time only")
        return SourceSpec(
            kind="file", target=target, paced="paced" in options, live=live, speed=speed
        )
    _only(options, {"baud"}, spec)
    baud = _number(options.get("baud", "9600"), "baud", spec)
    if baud <= 0 or baud != int(baud):
        raise ConfigurationError(f"GNSS source {spec!r}: baud must be a positive integer")
    return SourceSpec(kind="serial", target=target, baudrate=int(baud))


def open_source(spec: str) -> GnssSource:
    """The GNSS source ``spec`` names (see the module docstring).

    Raises ConfigurationError for a spec that does not parse (``parse_source_spec``);
    GnssUnavailable when a serial port cannot be opened. A missing capture file or an
    unreachable gpsd shows up when the source is read.
    """
    parsed = parse_source_spec(spec)
    if parsed.kind == "gpsd":
        return GpsdSource(parsed.target, parsed.port)
    if parsed.kind == "file" and parsed.live:
        return LiveReplaySource(Path(parsed.target))
    if parsed.kind == "file":
        return FileReplaySource(Path(parsed.target), paced=parsed.paced, speed=parsed.speed)
    return SerialSource(parsed.target, baudrate=parsed.baudrate)


def _options(query: str, spec: str) -> dict[str, str]:
    """``a&b=1`` → ``{"a": "", "b": "1"}``."""
    options: dict[str, str] = {}
    for item in query.split("&") if query else ():
        key, _, value = item.partition("=")
        if not key:
            raise ConfigurationError(f"GNSS source {spec!r}: bad options {query!r}")
        options[key] = value
    return options


def _only(options: dict[str, str], known: set[str], spec: str) -> None:
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigurationError(
            f"GNSS source {spec!r}: unknown option(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known))})"
        )


def _number(text: str, name: str, spec: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigurationError(f"GNSS source {spec!r}: {name} {text!r} is not a number") from None


def _host_port(rest: str, spec: str) -> tuple[str, int]:
    if rest.startswith("["):
        host, bracket, tail = rest[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise ConfigurationError(f"GNSS source {spec!r}: bad bracketed IPv6 host")
        port_text = tail[1:] if tail else ""
    else:
        host, _, port_text = rest.partition(":")
        if ":" in port_text:
            raise ConfigurationError(f"GNSS source {spec!r}: put an IPv6 host in brackets")
    if not host:
        raise ConfigurationError(f"GNSS source {spec!r} names no gpsd host")
    if not port_text:
        return host, GPSD_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigurationError(f"GNSS source {spec!r}: port {port_text!r} is not 1-65535")
    return host, int(port_text)
