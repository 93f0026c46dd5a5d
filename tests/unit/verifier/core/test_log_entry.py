"""Log entries: one canonical encoding per entry, every kind round-trips, others refused."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from geoattest.errors import LogEntryInvalid
from verifier.core.log_entry import (
    AuditAction,
    AuditEntry,
    EntryKind,
    FoldEntry,
    LogEntry,
    RecordEntry,
    TokenEntry,
    decode_entry,
    encode_entry,
    entry_kind,
)

AT = dt.datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=dt.UTC)

ENTRIES: list[LogEntry] = [
    RecordEntry(agent_id="edge-1", seq=7, digest=bytes(range(32)), ended_at=AT),
    FoldEntry(
        agent_id="edge-1",
        first_seq=8,
        last_seq=157,
        first_at=AT,
        last_at=AT + dt.timedelta(minutes=5),
        prev=bytes(32),
        head=b"\x01" * 32,
        outcomes={"passed": 150},
        max_gap_ms=2004,
    ),
    TokenEntry(
        agent_id="edge-1",
        jti="t-1",
        token_type="pog",  # noqa: S106  # a token type, not a secret
        audience="model-service",
        issued_at=AT,
        expires_at=AT + dt.timedelta(minutes=5),
        token_sha256=b"\x02" * 32,
        record_seq=7,
        workload="ab" * 32,
    ),
    AuditEntry(
        action=AuditAction.POLICY_PUT,
        at=AT,
        actor="verifier-1",
        subject="edge",
        details={"version": "3", "sha256": "cd" * 32},
    ),
]


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: entry_kind(e).value)
def test_every_kind_round_trips_through_its_canonical_bytes(entry: LogEntry) -> None:
    data = encode_entry(entry)
    assert decode_entry(data) == entry
    body = json.loads(data)
    assert body["type"] == "geoattest.log-entry"
    assert body["kind"] == entry_kind(entry).value
    assert data == json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def test_a_fold_counts_its_records() -> None:
    fold = ENTRIES[1]
    assert isinstance(fold, FoldEntry)
    assert fold.count == 150


def test_entries_not_in_canonical_form_are_refused() -> None:
    data = encode_entry(ENTRIES[0])
    spaced = json.dumps(json.loads(data), sort_keys=True).encode()
    with pytest.raises(LogEntryInvalid, match="canonical"):
        decode_entry(spaced)


@pytest.mark.parametrize(
    "change",
    [
        {"type": "geoattest.evidence-record"},
        {"v": 2},
        {"kind": "unknown"},
        {"digest": "not hex"},
        {"seq": "seven"},
    ],
)
def test_entries_that_are_no_entry_are_refused(change: dict[str, object]) -> None:
    body = {**json.loads(encode_entry(ENTRIES[0])), **change}
    with pytest.raises(LogEntryInvalid):
        decode_entry(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


def test_an_unknown_audit_action_is_refused() -> None:
    body = {**json.loads(encode_entry(ENTRIES[3])), "action": "anything_goes"}
    with pytest.raises(LogEntryInvalid):
        decode_entry(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    assert EntryKind.AUDIT.value == "audit"
