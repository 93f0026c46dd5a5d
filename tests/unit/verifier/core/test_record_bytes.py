"""A record's canonical bytes are pinned: encoder changes must not move a single byte (a stored
chain's digests are over these bytes)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from allowlists.ima.replay import ImaState
from geoattest.pcr_banks import PcrBank
from tpm import ClockInfo
from verifier.core.reasons import Reason
from verifier.core.record import decode_record, encode_record
from verifier.core.record_types import (
    EvidenceRecord,
    LocationSummary,
    PolicyRef,
    RecordContext,
    RecordKind,
)
from verifier.core.round_types import Check, CheckResult, RoundEvidence, Verdict
from verifier.core.states import AgentState, Outcome

AT = datetime(2026, 12, 2, 4, 1, 2, 345678, tzinfo=UTC)

# SHA-256 and length of the record below as the encoder gave it before the one-encoder change
# (commit 9fb3fa7's ``verifier.core.record.encode_record``).
PINNED_SHA256 = "5e1c731dd1a5e7c06f054359f182828360a2b145bbd5d01c9da094770e9ee820"
PINNED_LENGTH = 2_616


def fixed_record() -> EvidenceRecord:
    """A record with every field set, text with escapes, non-ASCII and a non-UTF-8 IMA entry."""
    return EvidenceRecord(
        agent_id="edge-07",
        seq=42,
        kind=RecordKind.ROUND,
        round_id="0123456789abcdef0123456789abcdef",
        started_at=AT,
        ended_at=AT + timedelta(milliseconds=38),
        prev=bytes(range(32)),
        verifier_id="verifier-a",
        from_state=AgentState.ATTESTED,
        to_state=AgentState.FAILED,
        reason=Reason.IMA_ENTRY_NOT_ALLOWED,
        message='file "/usr/bin/zé\tx" not allowed \u2028 \x01',
        details={"path": "/usr/bin/zé", "pcr": "10"},
        outcome=Outcome.INTEGRITY_FAILURE,
        judged_at=AT + timedelta(milliseconds=30),
        policy=PolicyRef(name="edge", version=3, sha256=hashlib.sha256(b"policy").digest()),
        zones_sha256=hashlib.sha256(b"zones").digest(),
        ak_name=b"\x00\x0b" + hashlib.sha256(b"ak").digest(),
        location_key_name=b"\x00\x0b" + hashlib.sha256(b"lk").digest(),
        evidence=RoundEvidence(
            nonce=bytes(range(32, 64)),
            attest=b"\xffTCG" + bytes(range(60)),
            signature=bytes(range(72)),
            pcrs={
                PcrBank.SHA256: {0: bytes(32), 10: b"\x11" * 32},
                PcrBank.SHA1: {10: b"\x22" * 20},
            },
            ima_offset=5,
            ima_lines=(
                "10 " + "ab" * 20 + " ima-ng sha256:" + "cd" * 32 + " /usr/bin/zé",
                (b"10 " + b"ef" * 20 + b" ima-ng sha256:" + b"01" * 32 + b" /tmp/\xff\xfe").decode(
                    "utf-8", "surrogateescape"
                ),
            ),
            location=b"\x01\x02location evidence",
            location_signature=b"\x30\x45signature",
        ),
        boot_log_sha256=hashlib.sha256(b"boot log").digest(),
        context=RecordContext(
            clock=ClockInfo(clock=1_000_655, reset_count=2, restart_count=1, safe=True),
            ima=ImaState(entries_verified=5, pcr10={PcrBank.SHA256: b"\x33" * 32}),
            track_sha256=hashlib.sha256(b"track").digest(),
            track_length=3,
        ),
        checks=(
            CheckResult(check=Check.QUOTE, verdict=Verdict.PASSED),
            CheckResult(
                check=Check.IMA,
                verdict=Verdict.FAILED,
                reason=Reason.IMA_ENTRY_NOT_ALLOWED,
                message="not allowed",
            ),
            CheckResult(check=Check.LOCATION, verdict=Verdict.SKIPPED),
        ),
        location=LocationSummary(decision="inside", zone_id="fr-paris", distance_m=1234.57),
    )


def test_a_record_s_bytes_are_pinned() -> None:
    encoded = encode_record(fixed_record())
    assert (hashlib.sha256(encoded).hexdigest(), len(encoded)) == (PINNED_SHA256, PINNED_LENGTH)
    assert decode_record(encoded) == fixed_record()
