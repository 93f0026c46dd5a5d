"""Typed bodies of the NMEA 0183 sentences geoattest uses, and their strict field converters.

Field positions follow NMEA 0183 v4.10 (``data`` excludes the talker/type word); optional
trailing fields of newer versions (RMC/GNS nav status, GSV signal id, GSA system id) are read
when present.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from geofence import _fields as f


@dataclass(frozen=True, slots=True, kw_only=True)
class Rmc:
    time: dt.time | None
    status: str | None  # A valid, V warning
    latitude: float | None
    longitude: float | None
    speed_knots: float | None
    course_deg: float | None
    date: dt.date | None
    date_invalid: bool  # a date field was sent but is not a date (GPS week-rollover bugs)
    mode: str | None  # NMEA 2.3+: A D E F M N P R S


@dataclass(frozen=True, slots=True, kw_only=True)
class Gga:
    time: dt.time | None
    latitude: float | None
    longitude: float | None
    quality: int
    satellites: int | None
    hdop: float | None
    altitude_m: float | None
    geoid_separation_m: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Gns:
    time: dt.time | None
    latitude: float | None
    longitude: float | None
    mode: str  # one indicator letter per constellation, e.g. "AAN"
    satellites: int | None
    hdop: float | None
    altitude_m: float | None
    geoid_separation_m: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Gsa:
    fix_type: int | None  # 1 none, 2 = 2D, 3 = 3D
    prns: tuple[int, ...]
    pdop: float | None
    hdop: float | None
    vdop: float | None
    system_id: int | None  # NMEA 4.10: 1 GPS, 2 GLONASS, 3 Galileo, 4 BeiDou, 5 QZSS


class GsvSatellite(NamedTuple):
    """One satellite of a GSV sentence (a NamedTuple: GSV is half of all NMEA traffic)."""

    prn: int
    elevation_deg: float | None
    azimuth_deg: float | None
    cn0_dbhz: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Gsv:
    in_view: int | None
    satellites: tuple[GsvSatellite, ...]
    signal_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Vtg:
    course_deg: float | None
    speed_knots: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Gst:
    time: dt.time | None
    sigma_lat_m: float | None
    sigma_lon_m: float | None
    sigma_alt_m: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Txt:
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Zda:
    time: dt.time | None
    date: dt.date | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Gll:
    time: dt.time | None
    latitude: float | None
    longitude: float | None
    status: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Proprietary:
    manufacturer: str


Body = Rmc | Gga | Gns | Gsa | Gsv | Vtg | Gst | Txt | Zda | Gll | Proprietary


def _at(data: list[str], i: int) -> str:
    return data[i] if i < len(data) else ""


def _rmc(d: list[str]) -> Rmc:
    try:
        date, date_invalid = f.rmc_date(_at(d, 8)), False
    except f.FieldError:
        date, date_invalid = None, True
    return Rmc(
        time=f.time_of_day(_at(d, 0)),
        status=f.char(_at(d, 1), "AV"),
        latitude=f.coordinate(_at(d, 2), _at(d, 3), latitude=True),
        longitude=f.coordinate(_at(d, 4), _at(d, 5), latitude=False),
        speed_knots=f.number(_at(d, 6)),
        course_deg=f.number(_at(d, 7)),
        date=date,
        date_invalid=date_invalid,
        mode=f.char(_at(d, 11), "ADEFMNPRS"),
    )


def _gga(d: list[str]) -> Gga:
    return Gga(
        time=f.time_of_day(_at(d, 0)),
        latitude=f.coordinate(_at(d, 1), _at(d, 2), latitude=True),
        longitude=f.coordinate(_at(d, 3), _at(d, 4), latitude=False),
        quality=f.integer(_at(d, 5)) or 0,
        satellites=f.integer(_at(d, 6)),
        hdop=f.number(_at(d, 7)),
        altitude_m=f.number(_at(d, 8)),
        geoid_separation_m=f.number(_at(d, 10)),
    )


def _gns(d: list[str]) -> Gns:
    mode = _at(d, 5)
    if not set(mode) <= set("ADEFMNPRS"):
        raise f.FieldError(f"bad GNS mode {mode!r}")
    return Gns(
        time=f.time_of_day(_at(d, 0)),
        latitude=f.coordinate(_at(d, 1), _at(d, 2), latitude=True),
        longitude=f.coordinate(_at(d, 3), _at(d, 4), latitude=False),
        mode=mode,
        satellites=f.integer(_at(d, 6)),
        hdop=f.number(_at(d, 7)),
        altitude_m=f.number(_at(d, 8)),
        geoid_separation_m=f.number(_at(d, 9)),
    )


def _gsa(d: list[str]) -> Gsa:
    prns = tuple(p for p in (f.integer(x) for x in d[2:14]) if p is not None)
    return Gsa(
        fix_type=f.integer(_at(d, 1)),
        prns=prns,
        pdop=f.number(_at(d, 14)),
        hdop=f.number(_at(d, 15)),
        vdop=f.number(_at(d, 16)),
        system_id=f.integer(_at(d, 17)),
    )


def _gsv(d: list[str]) -> Gsv:
    groups, extra = divmod(max(0, len(d) - 3), 4)
    sats = []
    number = f.number
    for i in range(3, 3 + 4 * groups, 4):
        prn = f.integer(d[i])
        if prn is not None:
            sats.append(GsvSatellite(prn, number(d[i + 1]), number(d[i + 2]), number(d[i + 3])))
    return Gsv(
        in_view=f.integer(_at(d, 2)),
        satellites=tuple(sats),
        signal_id=(d[-1] or None) if extra == 1 else None,
    )


def _txt(d: list[str]) -> Txt:
    return Txt(text=",".join(d[3:]) if len(d) >= 4 else ",".join(d))


def _gst(d: list[str]) -> Gst:
    return Gst(
        time=f.time_of_day(_at(d, 0)),
        sigma_lat_m=f.number(_at(d, 5)),
        sigma_lon_m=f.number(_at(d, 6)),
        sigma_alt_m=f.number(_at(d, 7)),
    )


def _zda(d: list[str]) -> Zda:
    return Zda(time=f.time_of_day(_at(d, 0)), date=f.zda_date(_at(d, 1), _at(d, 2), _at(d, 3)))


def _gll(d: list[str]) -> Gll:
    return Gll(
        time=f.time_of_day(_at(d, 4)),
        latitude=f.coordinate(_at(d, 0), _at(d, 1), latitude=True),
        longitude=f.coordinate(_at(d, 2), _at(d, 3), latitude=False),
        status=f.char(_at(d, 5), "AV"),
    )


def _vtg(d: list[str]) -> Vtg:
    return Vtg(course_deg=f.number(_at(d, 0)), speed_knots=f.number(_at(d, 4)))


CONVERTERS: dict[str, Callable[[list[str]], Body]] = {
    "RMC": _rmc,
    "GGA": _gga,
    "GNS": _gns,
    "GSA": _gsa,
    "GSV": _gsv,
    "VTG": _vtg,
    "GST": _gst,
    "TXT": _txt,
    "ZDA": _zda,
    "GLL": _gll,
}
