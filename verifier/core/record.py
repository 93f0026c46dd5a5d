"""Evidence records: what one round (or operator action) proved, as canonical, hash-chained bytes.

Every round leaves a record: the evidence as received, the memory it was judged against, the
policy and zones it was judged by (name, version, SHA-256), a verdict per check and the state
transition. Each agent's records form a hash chain: a record names the digest of the agent's
previous one (``GENESIS`` for the first), so removing, reordering or editing a record breaks
every later link, across reboots and re-admissions alike.

**Encoding** (``type`` = ``geoattest.evidence-record``, ``v`` = 1): an RFC 8785 (JCS) canonical
JSON object; byte strings as standard base64 (``attest``, ``signature``, ``location``…) or
lowercase hex (digests, nonce), times as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, absent values omitted.
``decode_record`` accepts only the canonical form (it re-encodes and compares), so one record has
exactly one encoding and one digest: ``SHA-256("geoattest-record-v1" ‖ 0x00 ‖ bytes)``.

IMA entries are stored byte-exact as on the wire (``geoattest.wire.ImaWire``): ``ima.lines``
holds each entry as text, and an entry that is not UTF-8 (a name the kernel printed raw) shows
there as its ``\\xNN`` rendering while ``ima.raw`` maps its index to its bytes in base64. JSON
text (and RFC 8785) cannot hold the lone surrogates such an entry decodes to, so it never goes
into ``lines`` itself. The field is optional: a record without such entries has none.

Pure: no I/O, no clock. ``verifier.core.reverify`` re-checks a record from these bytes alone.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from allowlists.ima.replay import ImaState
from geoattest.errors import EvidenceMalformed
from geoattest.pcr_banks import PcrBank
from geoattest.wire import render_line
from geofence import GnssReceiver, SourceKind
from geofence.receiver import IDENTITY_SEPARATOR
from tpm import ClockInfo
from verifier.core.canonical import canonical_json, plain_canonical_json
from verifier.core.reasons import Reason
from verifier.core.record_types import (
    EvidenceRecord,
    LocationSummary,
    PolicyRef,
    RecordContext,
    RecordKind,
)
from verifier.core.round_types import Check, CheckResult, RoundEvidence, Verdict
from verifier.core.states import AgentState, Outcome

RECORD_TYPE = "geoattest.evidence-record"
RECORD_VERSION = 1
GENESIS = bytes(32)  # the ``prev`` of an agent's first record
_DIGEST_PREFIX = b"geoattest-record-v1\x00"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def track_digest(track: Sequence[bytes]) -> bytes:
    """``RecordContext.track_sha256`` of a location track (oldest first)."""
    return hashlib.sha256(b"".join(hashlib.sha256(item).digest() for item in track)).digest()


def record_digest(encoded: bytes) -> bytes:
    # Fed in pieces under 2 KiB: hashlib releases the GIL for larger updates, and in a worker
    # with many round threads each release and re-acquisition costs more than the hash itself.
    digest = hashlib.sha256(_DIGEST_PREFIX)
    for start in range(0, len(encoded), _HASH_PIECE):
        digest.update(encoded[start : start + _HASH_PIECE])
    return digest.digest()


_HASH_PIECE = 2000


def encode_record(record: EvidenceRecord) -> bytes:
    """The canonical bytes of ``record`` (see the module docstring): RFC 8785, through
    ``verifier.core.canonical``. ``_to_json`` builds plain JSON (strings, small integers, ASCII
    keys; no floats: distances are integer centimetres), so the encoder's walk is skipped, but
    for ``details`` with other keys; a test holds records' bytes equal to ``rfc8785``'s.
    ``ValueError`` for text JSON cannot carry (lone surrogates)."""
    body = _to_json(record)
    if all(key.isascii() for key in record.details):
        return plain_canonical_json(body)
    return canonical_json(body)


def decode_record(data: bytes) -> EvidenceRecord:
    """Parse canonical record bytes; ``EvidenceMalformed`` for anything else."""
    try:
        body = json.loads(data)
        if not isinstance(body, dict) or body.get("type") != RECORD_TYPE:
            raise ValueError("not an evidence record")
        if body.get("v") != RECORD_VERSION:
            raise ValueError(f"record version {body.get('v')!r} is not {RECORD_VERSION}")
        record = _from_json(body)
    except (ValueError, KeyError, TypeError) as e:
        raise EvidenceMalformed(f"evidence record does not parse: {e}") from e
    if encode_record(record) != data:
        raise EvidenceMalformed("evidence record is not in canonical form")
    return record


# --- JSON mapping ---------------------------------------------------------------------------------


def _time(value: dt.datetime) -> str:
    # ``_TIME_FORMAT``'s text (for years from 1000), by ``isoformat``: half the time of
    # ``strftime``, four times a record.
    utc = value if value.tzinfo is dt.UTC else value.astimezone(dt.UTC)
    return utc.isoformat(timespec="microseconds")[:-6] + "Z"


def _parse_time(value: str) -> dt.datetime:
    return dt.datetime.strptime(value, _TIME_FORMAT).replace(tzinfo=dt.UTC)


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _unb64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def _drop_none(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if value is not None and value != {}}


def _to_json(r: EvidenceRecord) -> dict[str, Any]:
    return _drop_none(
        {
            "type": RECORD_TYPE,
            "v": RECORD_VERSION,
            "agent_id": r.agent_id,
            "seq": r.seq,
            "kind": r.kind,  # StrEnum members encode as their value (str subclasses)
            "round_id": r.round_id,
            "started_at": _time(r.started_at),
            "ended_at": _time(r.ended_at),
            "prev": r.prev.hex(),
            "verifier_id": r.verifier_id,
            "state": {"from": r.from_state, "to": r.to_state},
            "reason": r.reason,
            "message": r.message or None,
            "details": dict(r.details),
            "outcome": r.outcome,
            "judged_at": _time(r.judged_at) if r.judged_at else None,
            "policy": (
                {
                    "name": r.policy.name,
                    "version": r.policy.version,
                    "sha256": r.policy.sha256.hex(),
                }
                if r.policy
                else None
            ),
            "zones_sha256": r.zones_sha256.hex() if r.zones_sha256 else None,
            "ak_name": r.ak_name.hex() if r.ak_name else None,
            "location_key_name": r.location_key_name.hex() if r.location_key_name else None,
            "evidence": _evidence_json(r.evidence) if r.evidence else None,
            "boot_log_sha256": r.boot_log_sha256.hex() if r.boot_log_sha256 else None,
            "context": _context_json(r.context) if r.context else None,
            "checks": [_check_json(c) for c in r.checks] or None,
            "location": (
                _drop_none(
                    {
                        "decision": r.location.decision,
                        "zone": r.location.zone_id,
                        # centimetres: JCS numbers are exact only as integers of this size
                        "distance_cm": round(r.location.distance_m * 100),
                        "accuracy_cm": (
                            round(r.location.accuracy_m * 100)
                            if r.location.accuracy_m is not None
                            else None
                        ),
                    }
                )
                if r.location
                else None
            ),
        }
    )


def _evidence_json(e: RoundEvidence) -> dict[str, Any]:
    return _drop_none(
        {
            "nonce": e.nonce.hex(),
            "attest": _b64(e.attest),
            "signature": _b64(e.signature),
            "pcrs": {
                bank: {str(i): v.hex() for i, v in values.items()}
                for bank, values in e.pcrs.items()
            },
            "ima": _ima_json(e.ima_offset, e.ima_lines),
            "location": _b64(e.location) if e.location is not None else None,
            "location_signature": (
                _b64(e.location_signature) if e.location_signature is not None else None
            ),
        }
    )


def _ima_json(offset: int, lines: Sequence[str]) -> dict[str, Any]:
    shown: list[str] = []
    raw: dict[str, str] = {}
    for index, line in enumerate(lines):
        data = line.encode("utf-8", "surrogateescape")
        try:
            shown.append(data.decode("utf-8"))
        except UnicodeDecodeError:  # the kernel's bytes are not UTF-8: keep them exactly
            shown.append(render_line(data))
            raw[str(index)] = _b64(data)
    return _drop_none({"offset": offset, "lines": shown, "raw": raw or None})


def _ima_lines(ima: dict[str, Any]) -> tuple[str, ...]:
    lines = [str(line) for line in ima["lines"]]
    for index, data in dict(ima.get("raw", {})).items():
        position = int(index)
        if not 0 <= position < len(lines) or str(position) != index:
            raise ValueError(f"ima.raw index {index!r} names no line")
        lines[position] = _unb64(data).decode("utf-8", "surrogateescape")
    return tuple(lines)


def _context_json(c: RecordContext) -> dict[str, Any]:
    clock = c.clock
    return _drop_none(
        {
            "clock": (
                [clock.clock, clock.reset_count, clock.restart_count, int(clock.safe)]
                if clock
                else None
            ),
            "ima": (
                {
                    "entries": c.ima.entries_verified,
                    "pcr10": {bank: v.hex() for bank, v in c.ima.pcr10.items()},
                }
                if c.ima
                else None
            ),
            "track_sha256": c.track_sha256.hex(),
            "track_length": c.track_length,
            "receiver": (
                {"source": c.receiver.source.value, "identity": c.receiver.identity}
                if c.receiver
                else None
            ),
        }
    )


def _check_json(c: CheckResult) -> dict[str, Any]:
    body: dict[str, Any] = {"check": c.check, "verdict": c.verdict}
    if c.reason:
        body["reason"] = c.reason
    if c.message:
        body["message"] = c.message
    return body


def _from_json(b: dict[str, Any]) -> EvidenceRecord:
    policy = b.get("policy")
    location = b.get("location")
    return EvidenceRecord(
        agent_id=str(b["agent_id"]),
        seq=int(b["seq"]),
        kind=RecordKind(b["kind"]),
        round_id=str(b["round_id"]),
        started_at=_parse_time(b["started_at"]),
        ended_at=_parse_time(b["ended_at"]),
        prev=bytes.fromhex(b["prev"]),
        verifier_id=str(b["verifier_id"]),
        from_state=AgentState(b["state"]["from"]),
        to_state=AgentState(b["state"]["to"]),
        reason=Reason(b["reason"]) if "reason" in b else None,
        message=str(b.get("message", "")),
        details={str(k): str(v) for k, v in b.get("details", {}).items()},
        outcome=Outcome(b["outcome"]) if "outcome" in b else None,
        judged_at=_parse_time(b["judged_at"]) if "judged_at" in b else None,
        policy=(
            PolicyRef(
                name=str(policy["name"]),
                version=int(policy["version"]),
                sha256=bytes.fromhex(policy["sha256"]),
            )
            if policy
            else None
        ),
        zones_sha256=bytes.fromhex(b["zones_sha256"]) if "zones_sha256" in b else None,
        ak_name=bytes.fromhex(b["ak_name"]) if "ak_name" in b else None,
        location_key_name=(
            bytes.fromhex(b["location_key_name"]) if "location_key_name" in b else None
        ),
        evidence=_evidence_from(b["evidence"]) if "evidence" in b else None,
        boot_log_sha256=bytes.fromhex(b["boot_log_sha256"]) if "boot_log_sha256" in b else None,
        context=_context_from(b["context"]) if "context" in b else None,
        checks=tuple(
            CheckResult(
                check=Check(c["check"]),
                verdict=Verdict(c["verdict"]),
                reason=Reason(c["reason"]) if "reason" in c else None,
                message=str(c.get("message", "")),
            )
            for c in b.get("checks", [])
        ),
        location=(
            LocationSummary(
                decision=str(location["decision"]),
                zone_id=str(location["zone"]),
                distance_m=int(location["distance_cm"]) / 100,
                accuracy_m=(
                    int(location["accuracy_cm"]) / 100 if "accuracy_cm" in location else None
                ),
            )
            if location
            else None
        ),
    )


def _evidence_from(e: dict[str, Any]) -> RoundEvidence:
    return RoundEvidence(
        nonce=bytes.fromhex(e["nonce"]),
        attest=_unb64(e["attest"]),
        signature=_unb64(e["signature"]),
        pcrs={
            PcrBank(bank): {int(i): bytes.fromhex(v) for i, v in values.items()}
            for bank, values in e.get("pcrs", {}).items()
        },
        ima_offset=int(e["ima"]["offset"]),
        ima_lines=_ima_lines(e["ima"]),
        location=_unb64(e["location"]) if "location" in e else None,
        location_signature=(_unb64(e["location_signature"]) if "location_signature" in e else None),
    )


def _context_from(c: dict[str, Any]) -> RecordContext:
    clock = None
    if "clock" in c:
        ticks, reset_count, restart_count, safe = c["clock"]
        clock = ClockInfo(
            clock=int(ticks),
            reset_count=int(reset_count),
            restart_count=int(restart_count),
            safe=bool(safe),
        )
    ima = None
    if "ima" in c:
        ima = ImaState(
            entries_verified=int(c["ima"]["entries"]),
            pcr10={PcrBank(k): bytes.fromhex(v) for k, v in c["ima"]["pcr10"].items()},
        )
    return RecordContext(
        clock=clock,
        ima=ima,
        track_sha256=bytes.fromhex(c["track_sha256"]),
        track_length=int(c["track_length"]),
        receiver=(
            GnssReceiver(
                source=SourceKind(c["receiver"]["source"]),
                texts=tuple(str(c["receiver"]["identity"]).split(IDENTITY_SEPARATOR))
                if c["receiver"]["identity"]
                else (),
            )
            if "receiver" in c
            else None
        ),
    )
