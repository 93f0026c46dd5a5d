"""Location evidence and its canonical byte encoding (what the TPM location key signs).

**Encoding** (version 3): one JSON object, UTF-8 (in practice ASCII: non-ASCII is ``\\uXXXX``
escaped), keys sorted by code point, no whitespace (``,`` and ``:`` separators), and:

* ``type`` = ``"geoattest.location-evidence"``, ``v`` = 3;
* floats as JSON numbers with a fixed number of decimals per field (:data:`DECIMALS`: 9 for
  degrees ≈ 0.1 mm, 3 for metres and m/s, 2 for DOP and course); ``-0`` is written as ``0``;
* integers in decimal, ``null`` for absent values, byte strings (nonce, NMEA digest) as lowercase
  hex, the time as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC, always 6 fraction digits);
* ``cn0_dbhz``: the per-satellite C/N0 as a JSON array of ``["<constellation>:<prn>", dB-Hz]``
  pairs, e.g. ``[["GPS:12",45],["Galileo:3",38]]``: one pair per satellite (its strongest signal,
  as :meth:`Fix.cn0_values`), the value rounded to an integer 0..99 (NMEA GSV's own range and
  resolution), strictly sorted by the id string's code points, at most :data:`MAX_CN0_SATELLITES`
  (the strongest, when a receiver tracks more); ``[]`` when the receiver reports none;
* ``rmc_status``: RMC's status letter (``A`` valid, ``V`` void) or ``null``;
* ``source``: which kind of source the agent read the fix from (:class:`SourceKind`: ``"file"``
  replay, ``"serial"`` port, ``"gpsd"``); never ``null``;
* ``vertical_accuracy_m``: the fix's 2-sigma vertical accuracy in metres (``Fix``'s, from GST or
  VDOP), 3 decimals, or ``null`` when the receiver reports neither.

Version 2 adds ``cn0_dbhz`` and ``rmc_status`` to version 1 so that the verifier runs the
C/N0-uniformity spoofing check and the RMC-status part of the fix-quality check itself, instead
of trusting the node that vouches for itself. Version 3 adds ``source`` (so a policy can refuse
a replayed file in production) and ``vertical_accuracy_m`` (so the verifier runs the vertical
speed check on its own track of signed fixes). :func:`decode_evidence` still *decodes* versions 1
and 2 (the verifier's remembered track holds evidence of earlier rounds, signed before an
upgrade), but ``verifier.core.location.check_location`` refuses them as a round's evidence: they
lack what the checks need, and skipping the checks would let exactly the evidence that hides it
pass. :attr:`LocationEvidence.version` says which one was decoded.

Values are rounded to those decimals when the evidence is built (:meth:`LocationEvidence.from_fix`),
so ``decode_evidence(encode_evidence(ev)) == ev``. :func:`decode_evidence` accepts only the
canonical form: it re-encodes what it parsed and rejects any byte difference, so one evidence has
exactly one encoding and one digest. Signing is not done here (``tpm/`` and ``agent/``).
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import math
import re
from dataclasses import dataclass, fields
from typing import Any

from geoattest.errors import LocationEvidenceInvalid
from geofence.fix import Fix

EVIDENCE_TYPE = "geoattest.location-evidence"
EVIDENCE_VERSION = 3
SUPPORTED_VERSIONS = (1, 2, 3)
MAX_EVIDENCE_BYTES = 4096
MAX_CN0_SATELLITES = 64
MAX_CN0_DBHZ = 99
DECIMALS = {
    "latitude": 9,
    "longitude": 9,
    "altitude_m": 3,
    "horizontal_accuracy_m": 3,
    "vertical_accuracy_m": 3,
    "hdop": 2,
    "speed_mps": 3,
    "course_deg": 2,
}
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_SATELLITE_ID = re.compile(r"[A-Za-z]{1,16}:(0|[1-9][0-9]{0,3})")

Cn0 = tuple[tuple[str, int], ...]
"""Per-satellite C/N0: ``(("GPS:12", 45), ...)``, strictly sorted by id."""


class SourceKind(enum.StrEnum):
    """Where the agent read the NMEA from (``agent.gnss``). ``FILE`` is a replay of a capture:
    right for tests and demos, never a receiver."""

    FILE = "file"
    SERIAL = "serial"
    GPSD = "gpsd"


def satellite_id(constellation: str, prn: int) -> str:
    """The id of a satellite in ``cn0_dbhz``: ``"<constellation>:<prn>"``."""
    return f"{constellation}:{prn}"


def _cn0_of(fix: Fix) -> Cn0:
    best: dict[str, float] = {}
    for s in fix.signals:
        if s.cn0_dbhz is not None:
            key = satellite_id(s.constellation, s.prn)
            best[key] = max(best.get(key, s.cn0_dbhz), s.cn0_dbhz)
    pairs: list[tuple[str, int]] = []
    for key, value in best.items():
        if not math.isfinite(value):
            raise LocationEvidenceInvalid(f"C/N0 of satellite {key} is {value}")
        pairs.append((key, round(value)))
    strongest = sorted(pairs, key=lambda p: (-p[1], p[0]))[:MAX_CN0_SATELLITES]
    return tuple(sorted(strongest))


@dataclass(frozen=True, slots=True, kw_only=True)
class LocationEvidence:
    """A fix as evidence: bound to the verifier's nonce, the receiver and the raw NMEA digest.

    ``version`` is the encoding version (not a field of the JSON object: its ``v``); version 1
    evidence has no ``cn0_dbhz`` (empty) and no ``rmc_status`` (None); versions 1 and 2 have no
    ``source`` and no ``vertical_accuracy_m`` (None).
    """

    nonce: bytes
    utc: dt.datetime
    latitude: float
    longitude: float
    altitude_m: float | None
    horizontal_accuracy_m: float | None
    accuracy_source: str
    quality: int | None
    rmc_mode: str | None
    gns_mode: str | None
    satellites_used: int | None
    hdop: float | None
    speed_mps: float | None
    course_deg: float | None
    receiver: str
    nmea_digest: bytes
    rmc_status: str | None = None
    cn0_dbhz: Cn0 = ()
    source: str | None = None
    vertical_accuracy_m: float | None = None
    version: int = EVIDENCE_VERSION

    @classmethod
    def from_fix(cls, fix: Fix, *, nonce: bytes, source: SourceKind) -> LocationEvidence:
        """Evidence for ``fix``, read from a ``source`` of that kind, answering ``nonce``.
        LocationEvidenceInvalid if it has no date or holds a value the verifier would refuse
        (:func:`decode_evidence`'s range checks)."""
        if fix.utc is None:
            raise LocationEvidenceInvalid("fix has no valid UTC date; it cannot be evidence")

        def q(name: str, value: float | None) -> float | None:
            return None if value is None else round(value, DECIMALS[name]) + 0.0

        ev = cls(
            nonce=nonce,
            utc=fix.utc.astimezone(dt.UTC),
            latitude=round(fix.latitude, 9) + 0.0,
            longitude=round(fix.longitude, 9) + 0.0,
            altitude_m=q("altitude_m", fix.altitude_m),
            horizontal_accuracy_m=q("horizontal_accuracy_m", fix.horizontal_accuracy_m),
            accuracy_source=fix.accuracy_source.value,
            quality=fix.quality,
            rmc_mode=fix.rmc_mode,
            gns_mode=fix.gns_mode,
            satellites_used=fix.satellites_used,
            hdop=q("hdop", fix.hdop),
            speed_mps=q("speed_mps", fix.speed_mps),
            course_deg=q("course_deg", fix.course_deg),
            receiver=str(fix.receiver) if fix.receiver else "",
            nmea_digest=fix.nmea_digest,
            rmc_status=fix.rmc_status,
            cn0_dbhz=_cn0_of(fix),
            source=SourceKind(source).value,
            vertical_accuracy_m=q("vertical_accuracy_m", fix.vertical_accuracy_m),
        )
        _check_ranges(ev)
        return ev


_FIELDS = tuple(f.name for f in fields(LocationEvidence) if f.name != "version")
_ADDED_IN = {"rmc_status": 2, "cn0_dbhz": 2, "source": 3, "vertical_accuracy_m": 3}
_FIELDS_BY_VERSION = {
    version: tuple(n for n in _FIELDS if _ADDED_IN.get(n, 1) <= version)
    for version in SUPPORTED_VERSIONS
}
_STR_FIELDS = {"accuracy_source", "rmc_mode", "gns_mode", "receiver", "rmc_status", "source"}
_INT_FIELDS = {"quality", "satellites_used"}


def _cn0_value(value: object) -> str:
    if not isinstance(value, tuple):
        raise LocationEvidenceInvalid(f"evidence field cn0_dbhz: unexpected {type(value).__name__}")
    out = []
    for pair in value:
        if not (
            isinstance(pair, tuple)
            and len(pair) == 2
            and isinstance(pair[0], str)
            and isinstance(pair[1], int)
            and not isinstance(pair[1], bool)
        ):
            raise LocationEvidenceInvalid(f"evidence field cn0_dbhz: bad entry {pair!r}")
        out.append(f"[{json.dumps(pair[0], ensure_ascii=True)},{pair[1]}]")
    return "[" + ",".join(out) + "]"


def _value(name: str, value: object) -> str:
    if name == "cn0_dbhz":
        return _cn0_value(value)
    if value is None:
        return "null"
    if name in DECIMALS and isinstance(value, float):
        text = f"{value:.{DECIMALS[name]}f}"
        return text[1:] if text.lstrip("-0.") == "" and text.startswith("-") else text
    if isinstance(value, bytes):
        return f'"{value.hex()}"'
    if isinstance(value, dt.datetime):
        if value.utcoffset() != dt.timedelta(0):
            raise LocationEvidenceInvalid("evidence time must be UTC")
        return f'"{value.strftime(_TIME_FORMAT)}"'
    if name in _INT_FIELDS and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if name in _STR_FIELDS and isinstance(value, str):
        return json.dumps(value, ensure_ascii=True)
    raise LocationEvidenceInvalid(f"evidence field {name}: unexpected {type(value).__name__}")


def encode_evidence(ev: LocationEvidence) -> bytes:
    """The canonical bytes of ``ev`` (see the module docstring), in ``ev.version``'s encoding.

    LocationEvidenceInvalid for an unknown version, or evidence of an older version holding
    values of a later one (they would be silently dropped from what is signed)."""
    names = _FIELDS_BY_VERSION.get(ev.version)
    if names is None:
        raise LocationEvidenceInvalid(f"unsupported evidence version {ev.version!r}")
    later = [
        name
        for name, added in _ADDED_IN.items()
        if added > ev.version and getattr(ev, name) not in (None, ())
    ]
    if later:
        raise LocationEvidenceInvalid(
            f"version {ev.version} evidence cannot carry {', '.join(later)}"
        )
    items = {name: _value(name, getattr(ev, name)) for name in names}
    items["type"] = json.dumps(EVIDENCE_TYPE)
    items["v"] = str(ev.version)
    return ("{" + ",".join(f'"{k}":{items[k]}' for k in sorted(items)) + "}").encode("ascii")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise LocationEvidenceInvalid(f"duplicate key {k!r}")
        out[k] = v
    return out


def _field(name: str, raw: object) -> object:
    if raw is None:
        return None
    if name in ("nonce", "nmea_digest") and isinstance(raw, str):
        return bytes.fromhex(raw)
    if name == "utc" and isinstance(raw, str):
        return dt.datetime.strptime(raw, _TIME_FORMAT).replace(tzinfo=dt.UTC)
    if name in DECIMALS and isinstance(raw, int | float):
        return float(raw) + 0.0
    if name == "cn0_dbhz" and isinstance(raw, list):
        return tuple(tuple(pair) if isinstance(pair, list) else pair for pair in raw)
    return raw


def decode_evidence(data: bytes) -> LocationEvidence:
    """Parse canonical evidence bytes (version 3, or 2 or 1: see the module docstring);
    LocationEvidenceInvalid on anything else."""
    if len(data) > MAX_EVIDENCE_BYTES:
        raise LocationEvidenceInvalid(f"evidence is {len(data)} bytes (max {MAX_EVIDENCE_BYTES})")
    try:
        doc = json.loads(data.decode("ascii"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise LocationEvidenceInvalid(f"evidence is not canonical JSON: {e}") from e
    if not isinstance(doc, dict) or doc.get("type") != EVIDENCE_TYPE:
        raise LocationEvidenceInvalid("not geoattest location evidence")
    version = doc.get("v")
    names = _FIELDS_BY_VERSION.get(version) if type(version) is int else None
    if names is None:
        raise LocationEvidenceInvalid(f"unsupported evidence version {version!r}")
    if set(doc) != {*names, "type", "v"}:
        raise LocationEvidenceInvalid(
            f"evidence fields differ: {sorted(set(doc) ^ {*names, 'type', 'v'})}"
        )
    try:
        values = {name: _field(name, doc[name]) for name in names}
        ev = LocationEvidence(**values, version=version)  # type: ignore[arg-type]  # checked by the re-encoding below
        canonical = encode_evidence(ev)
    except (ValueError, TypeError, AttributeError) as e:
        raise LocationEvidenceInvalid(f"evidence field malformed: {e}") from e
    if canonical != data:
        raise LocationEvidenceInvalid("evidence is not in canonical form")
    _check_ranges(ev)
    return ev


def _check_ranges(ev: LocationEvidence) -> None:
    """Signed is not sane: a key-holding attacker must not crash the zone code with values no
    receiver produces."""
    if not (math.isfinite(ev.latitude) and -90.0 <= ev.latitude <= 90.0):
        raise LocationEvidenceInvalid(f"latitude {ev.latitude} outside -90..90")
    if not (math.isfinite(ev.longitude) and -180.0 <= ev.longitude <= 180.0):
        raise LocationEvidenceInvalid(f"longitude {ev.longitude} outside -180..180")
    for name in ("horizontal_accuracy_m", "hdop", "speed_mps"):
        value = getattr(ev, name)
        if value is not None and not (math.isfinite(value) and value >= 0.0):
            raise LocationEvidenceInvalid(f"{name} {value} is not a finite non-negative number")
    if ev.altitude_m is not None and not math.isfinite(ev.altitude_m):
        raise LocationEvidenceInvalid(f"altitude {ev.altitude_m} is not finite")
    vertical = ev.vertical_accuracy_m
    if vertical is not None and not (math.isfinite(vertical) and vertical >= 0.0):
        raise LocationEvidenceInvalid(f"vertical_accuracy_m {vertical} is not a finite >= 0")
    if ev.version >= 3 and ev.source not in tuple(SourceKind):
        raise LocationEvidenceInvalid(f"source {ev.source!r} is not one of {', '.join(SourceKind)}")
    _check_cn0(ev.cn0_dbhz)


def _check_cn0(cn0: Cn0) -> None:
    if len(cn0) > MAX_CN0_SATELLITES:
        raise LocationEvidenceInvalid(
            f"cn0_dbhz has {len(cn0)} satellites (max {MAX_CN0_SATELLITES})"
        )
    previous = ""
    for sat, value in cn0:
        if not _SATELLITE_ID.fullmatch(sat):
            raise LocationEvidenceInvalid(f"cn0_dbhz: bad satellite id {sat!r}")
        if not 0 <= value <= MAX_CN0_DBHZ:
            raise LocationEvidenceInvalid(
                f"cn0_dbhz: {sat} at {value} dB-Hz outside 0..{MAX_CN0_DBHZ}"
            )
        if sat <= previous:
            raise LocationEvidenceInvalid(
                f"cn0_dbhz: satellite {sat} out of order or repeated (ids must strictly increase)"
            )
        previous = sat


def evidence_digest(encoded: bytes) -> bytes:
    """SHA-256 of the canonical evidence bytes (what the quote's qualifying data binds)."""
    return hashlib.sha256(encoded).digest()
