"""What the transparency log holds: one canonical entry per leaf (the leaf hash is
``merkle.leaf_hash(encode_entry(entry))``).

Four kinds (ADR 10 has the numbers that chose them):

- ``record``: an evidence record kept in full (failure, transition, reboot, operator or
  watchdog action, one sampled round per agent per 5 minutes), appended in the transaction
  that commits it. It names the record's digest: the record itself stays in the records table.
- ``fold``: a run of records past the hot window, as it is folded: the chain digests on both
  sides, the count of each outcome, the times of its first and last record and the longest
  interval between two of its records (a verifier outage inside a fold shows there).
- ``token``: a PoR/PoG token issued (its SHA-256, never the token), by the token service.
- ``audit``: an operator action that is no agent's record (policies, adding or removing
  agents), a key released or refused, a log key rotated.

Encoding: RFC 8785 canonical JSON (``type`` ``geoattest.log-entry``, ``v`` 1), digests in
lowercase hex, times as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``. ``decode_entry`` accepts only the
canonical form. Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from geoattest.errors import LogEntryInvalid
from verifier.core.canonical import canonical_json

ENTRY_TYPE = "geoattest.log-entry"
ENTRY_VERSION = 1
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class EntryKind(StrEnum):
    RECORD = "record"
    FOLD = "fold"
    TOKEN = "token"  # noqa: S105  # an entry kind, not a secret
    AUDIT = "audit"


class AuditAction(StrEnum):
    POLICY_PUT = "policy_put"
    POLICY_DELETED = "policy_deleted"
    AGENT_ADDED = "agent_added"
    AGENT_REMOVED = "agent_removed"
    AGENT_POLICY_SET = "agent_policy_set"
    AGENT_REFRESHED = "agent_refreshed"
    KEY_RELEASED = "key_released"  # by the relying party's key service
    KEY_REFUSED = "key_refused"
    LOG_KEY_ROTATED = "log_key_rotated"


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordEntry:
    agent_id: str
    seq: int
    digest: bytes
    ended_at: dt.datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class FoldEntry:
    agent_id: str
    first_seq: int
    last_seq: int
    first_at: dt.datetime  # ended_at of the run's first record
    last_at: dt.datetime  # and of its last
    prev: bytes  # digest of the record before the run
    head: bytes  # digest of the run's last record
    outcomes: Mapping[str, int]
    max_gap_ms: int  # longest interval between the ends of two consecutive records of the run

    @property
    def count(self) -> int:
        return self.last_seq - self.first_seq + 1


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenEntry:
    agent_id: str
    jti: str
    token_type: str  # por | pog
    audience: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    token_sha256: bytes  # of the compact JWS as issued
    record_seq: int | None = None  # the evidence record whose lease it was issued on
    workload: str | None = None  # the workload's code hash, hex


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    action: AuditAction
    at: dt.datetime
    actor: str  # who (an API key's name once there are roles; the verifier's id meanwhile)
    subject: str  # what: a policy name, an agent id, a key id
    agent_id: str | None = None  # the agent concerned, if any
    details: Mapping[str, str] = field(default_factory=dict)


LogEntry = RecordEntry | FoldEntry | TokenEntry | AuditEntry


def entry_kind(entry: LogEntry) -> EntryKind:
    if isinstance(entry, RecordEntry):
        return EntryKind.RECORD
    if isinstance(entry, FoldEntry):
        return EntryKind.FOLD
    if isinstance(entry, TokenEntry):
        return EntryKind.TOKEN
    return EntryKind.AUDIT


def entry_agent(entry: LogEntry) -> str | None:
    return entry.agent_id


def encode_entry(entry: LogEntry) -> bytes:
    body: dict[str, Any] = {"type": ENTRY_TYPE, "v": ENTRY_VERSION, "kind": entry_kind(entry)}
    body.update(_fields(entry))
    return canonical_json({k: v for k, v in body.items() if v is not None})


def decode_entry(data: bytes) -> LogEntry:
    """Parse canonical entry bytes; ``LogEntryInvalid`` for anything else."""
    try:
        body = json.loads(data)
        if not isinstance(body, dict) or body.get("type") != ENTRY_TYPE:
            raise ValueError("not a log entry")
        if body.get("v") != ENTRY_VERSION:
            raise ValueError(f"entry version {body.get('v')!r} is not {ENTRY_VERSION}")
        entry = _parse(EntryKind(body["kind"]), body)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise LogEntryInvalid(f"log entry does not parse: {e}") from e
    if encode_entry(entry) != data:
        raise LogEntryInvalid("log entry is not in canonical form")
    return entry


def _time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime(_TIME_FORMAT)


def _parse_time(value: object) -> dt.datetime:
    return dt.datetime.strptime(str(value), _TIME_FORMAT).replace(tzinfo=dt.UTC)


def _fields(entry: LogEntry) -> dict[str, Any]:
    if isinstance(entry, RecordEntry):
        return {
            "agent_id": entry.agent_id,
            "seq": entry.seq,
            "digest": entry.digest.hex(),
            "ended_at": _time(entry.ended_at),
        }
    if isinstance(entry, FoldEntry):
        return {
            "agent_id": entry.agent_id,
            "first_seq": entry.first_seq,
            "last_seq": entry.last_seq,
            "first_at": _time(entry.first_at),
            "last_at": _time(entry.last_at),
            "prev": entry.prev.hex(),
            "head": entry.head.hex(),
            "outcomes": dict(entry.outcomes),
            "max_gap_ms": entry.max_gap_ms,
        }
    if isinstance(entry, TokenEntry):
        return {
            "agent_id": entry.agent_id,
            "jti": entry.jti,
            "token_type": entry.token_type,
            "audience": entry.audience,
            "issued_at": _time(entry.issued_at),
            "expires_at": _time(entry.expires_at),
            "token_sha256": entry.token_sha256.hex(),
            "record_seq": entry.record_seq,
            "workload": entry.workload,
        }
    return {
        "action": entry.action.value,
        "at": _time(entry.at),
        "actor": entry.actor,
        "subject": entry.subject,
        "agent_id": entry.agent_id,
        "details": dict(entry.details) or None,
    }


def _parse(kind: EntryKind, b: dict[str, Any]) -> LogEntry:
    if kind is EntryKind.RECORD:
        return RecordEntry(
            agent_id=str(b["agent_id"]),
            seq=int(b["seq"]),
            digest=bytes.fromhex(b["digest"]),
            ended_at=_parse_time(b["ended_at"]),
        )
    if kind is EntryKind.FOLD:
        return FoldEntry(
            agent_id=str(b["agent_id"]),
            first_seq=int(b["first_seq"]),
            last_seq=int(b["last_seq"]),
            first_at=_parse_time(b["first_at"]),
            last_at=_parse_time(b["last_at"]),
            prev=bytes.fromhex(b["prev"]),
            head=bytes.fromhex(b["head"]),
            outcomes={str(k): int(v) for k, v in dict(b["outcomes"]).items()},
            max_gap_ms=int(b["max_gap_ms"]),
        )
    if kind is EntryKind.TOKEN:
        return TokenEntry(
            agent_id=str(b["agent_id"]),
            jti=str(b["jti"]),
            token_type=str(b["token_type"]),
            audience=str(b["audience"]),
            issued_at=_parse_time(b["issued_at"]),
            expires_at=_parse_time(b["expires_at"]),
            token_sha256=bytes.fromhex(b["token_sha256"]),
            record_seq=int(b["record_seq"]) if "record_seq" in b else None,
            workload=str(b["workload"]) if "workload" in b else None,
        )
    return AuditEntry(
        action=AuditAction(b["action"]),
        at=_parse_time(b["at"]),
        actor=str(b["actor"]),
        subject=str(b["subject"]),
        agent_id=str(b["agent_id"]) if "agent_id" in b else None,
        details={str(k): str(v) for k, v in dict(b.get("details", {})).items()},
    )
