"""Location evidence and its canonical byte encoding (what the TPM location key signs).

**Encoding** (version 1): one JSON object, UTF-8 (in practice ASCII: non-ASCII is ``\\uXXXX``
escaped), keys sorted by code point, no whitespace (``,`` and ``:`` separators), and:

* ``type`` = ``"geoattest.location-evidence"``, ``v`` = 1;
* floats as JSON numbers with a fixed number of decimals per field (:data:`DECIMALS`: 9 for
  degrees ≈ 0.1 mm, 3 for metres and m/s, 2 for DOP and course); ``-0`` is written as ``0``;
* integers in decimal, ``null`` for absent values, byte strings (nonce, NMEA digest) as lowercase
  hex, the time as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC, always 6 fraction digits).

Values are rounded to those decimals when the evidence is built (:meth:`LocationEvidence.from_fix`),
so ``decode_evidence(encode_evidence(ev)) == ev``. :func:`decode_evidence` accepts only the
canonical form: it re-encodes what it parsed and rejects any byte difference, so one evidence has
exactly one encoding and one digest. Signing is not done here (``tpm/`` and ``agent/``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass, fields
from typing import Any

from geoattest.errors import LocationEvidenceInvalid
from geofence.fix import Fix

EVIDENCE_TYPE = "geoattest.location-evidence"
EVIDENCE_VERSION = 1
MAX_EVIDENCE_BYTES = 4096
DECIMALS = {
    "latitude": 9,
    "longitude": 9,
    "altitude_m": 3,
    "horizontal_accuracy_m": 3,
    "hdop": 2,
    "speed_mps": 3,
    "course_deg": 2,
}
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True, slots=True, kw_only=True)
class LocationEvidence:
    """A fix as evidence: bound to the verifier's nonce, the receiver and the raw NMEA digest."""

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

    @classmethod
    def from_fix(cls, fix: Fix, *, nonce: bytes) -> LocationEvidence:
        """Evidence for ``fix`` answering ``nonce``. LocationEvidenceInvalid if it has no date."""
        if fix.utc is None:
            raise LocationEvidenceInvalid("fix has no valid UTC date; it cannot be evidence")

        def q(name: str, value: float | None) -> float | None:
            return None if value is None else round(value, DECIMALS[name]) + 0.0

        return cls(
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
        )


_FIELDS = tuple(f.name for f in fields(LocationEvidence))
_STR_FIELDS = {"accuracy_source", "rmc_mode", "gns_mode", "receiver"}
_INT_FIELDS = {"quality", "satellites_used"}


def _value(name: str, value: object) -> str:
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
    """The canonical bytes of ``ev`` (see the module docstring)."""
    items = {name: _value(name, getattr(ev, name)) for name in _FIELDS}
    items["type"] = json.dumps(EVIDENCE_TYPE)
    items["v"] = str(EVIDENCE_VERSION)
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
    return raw


def decode_evidence(data: bytes) -> LocationEvidence:
    """Parse canonical evidence bytes; LocationEvidenceInvalid on anything else."""
    if len(data) > MAX_EVIDENCE_BYTES:
        raise LocationEvidenceInvalid(f"evidence is {len(data)} bytes (max {MAX_EVIDENCE_BYTES})")
    try:
        doc = json.loads(data.decode("ascii"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise LocationEvidenceInvalid(f"evidence is not canonical JSON: {e}") from e
    if not isinstance(doc, dict) or doc.get("type") != EVIDENCE_TYPE:
        raise LocationEvidenceInvalid("not geoattest location evidence")
    if doc.get("v") != EVIDENCE_VERSION:
        raise LocationEvidenceInvalid(f"unsupported evidence version {doc.get('v')!r}")
    if set(doc) != {*_FIELDS, "type", "v"}:
        raise LocationEvidenceInvalid(f"evidence fields differ: {sorted(set(doc) ^ {*_FIELDS})}")
    try:
        ev = LocationEvidence(**{name: _field(name, doc[name]) for name in _FIELDS})  # type: ignore[arg-type]  # checked by the re-encoding below
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


def evidence_digest(encoded: bytes) -> bytes:
    """SHA-256 of the canonical evidence bytes (what the quote's qualifying data binds)."""
    return hashlib.sha256(encoded).digest()
