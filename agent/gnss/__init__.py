"""GNSS sources on the node: raw NMEA lines from a file, a serial port or gpsd.

All of them satisfy :class:`GnssSource`; :mod:`geofence` turns the lines into fixes.
"""

from agent.gnss.gpsd import GpsdSky, GpsdSource, GpsdTpv, parse_gpsd_report
from agent.gnss.source import FileReplaySource, GnssSource, SerialSource
from agent.gnss.spec import SourceSpec, open_source, parse_source_spec

__all__ = [
    "FileReplaySource",
    "GnssSource",
    "GpsdSky",
    "GpsdSource",
    "GpsdTpv",
    "SerialSource",
    "SourceSpec",
    "open_source",
    "parse_gpsd_report",
    "parse_source_spec",
]
