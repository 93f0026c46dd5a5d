"""Evidence records: canonical bytes, digests, the hash chain, and re-verification offline."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
import rfc8785
from hypothesis import example, given
from hypothesis import strategies as st

from geoattest.errors import EvidenceMalformed
from tests.unit.verifier.core.test_round import ALLOWED, NOW, SoftwareNode, _policy
from verifier.core.chain import FoldLink, Link, RecordLink, check_chain
from verifier.core.policy import AttestationPolicy
from verifier.core.record import GENESIS, decode_record, encode_record, record_digest
from verifier.core.record_types import EvidenceRecord, LocationSummary
from verifier.core.reverify import reverify_record
from verifier.core.round import verify_round
from verifier.core.round_record import RecordOrigin, round_record
from verifier.core.round_types import RoundMemory
from verifier.core.states import AgentState, Outcome

ORIGIN = RecordOrigin(verifier_id="verifier-test")


def _policy_with_digest(node: SoftwareNode) -> AttestationPolicy:
    return replace(_policy(node, ALLOWED), digest=hashlib.sha256(b"policy document").digest())


def _chain(node: SoftwareNode, policy: AttestationPolicy, rounds: int) -> list[EvidenceRecord]:
    """``rounds`` judged rounds as the commit would chain them (seq, prev, states)."""
    records, memory, prev, state = [], RoundMemory(), GENESIS, AgentState.REGISTERED
    for seq in range(1, rounds + 1):
        evidence = node.answer(os.urandom(32), memory.ima_offset_for(policy.ima_banks))
        judged_at = NOW + timedelta(seconds=2 * seq)
        result = verify_round(
            evidence, ak=node.ak.public, policy=policy, previous=memory, now=judged_at
        )
        draft = round_record(
            agent_id="edge-1",
            round_id=os.urandom(16).hex(),
            started_at=judged_at - timedelta(milliseconds=5),
            ended_at=judged_at + timedelta(milliseconds=5),
            judged_at=judged_at,
            origin=ORIGIN,
            policy=policy,
            ak=node.ak.public,
            location_key=None,
            previous=memory,
            evidence=evidence,
            result=result,
        )
        new_state = AgentState.ATTESTED if result.outcome is Outcome.PASSED else AgentState.FAILED
        record = replace(draft, seq=seq, prev=prev, from_state=state, to_state=new_state)
        records.append(record)
        prev, state = record_digest(encode_record(record)), new_state
        memory = result.memory
    return records


@pytest.fixture
def node() -> SoftwareNode:
    node = SoftwareNode()
    node.measure("/usr/bin/bash", b"bash")
    return node


@functools.cache
def _base_record() -> EvidenceRecord:
    node = SoftwareNode()
    node.measure("/usr/bin/bash", b"bash")
    return _chain(node, _policy_with_digest(node), 1)[0]


def test_a_record_round_trips_through_its_canonical_bytes(node: SoftwareNode) -> None:
    record = _chain(node, _policy_with_digest(node), 1)[0]
    encoded = encode_record(record)
    assert decode_record(encoded) == record
    assert encoded.startswith(b'{"agent_id":"edge-1"')  # RFC 8785: keys sorted, no whitespace
    assert record.evidence is not None
    assert record.evidence.ima_lines == tuple(node.log)


@pytest.mark.parametrize("offset_hours", [0, 2, -5])
def test_times_are_written_in_utc_with_microseconds(offset_hours: int) -> None:
    local = timezone(timedelta(hours=offset_hours))
    started = datetime(2026, 12, 4, 23, 30, 0, 5, tzinfo=local)
    record = replace(_base_record(), started_at=started)
    body = json.loads(encode_record(record))
    assert body["started_at"] == started.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert decode_record(encode_record(record)).started_at == started


def test_only_the_canonical_form_decodes(node: SoftwareNode) -> None:
    encoded = encode_record(_chain(node, _policy_with_digest(node), 1)[0])
    with pytest.raises(EvidenceMalformed, match="canonical"):
        decode_record(encoded.replace(b'"seq":1', b'"seq": 1'))
    with pytest.raises(EvidenceMalformed):
        decode_record(b'{"type":"something else"}')


def test_the_chain_of_a_run_is_intact(node: SoftwareNode) -> None:
    records = _chain(node, _policy_with_digest(node), 4)
    report = check_chain("edge-1", [RecordLink(canonical=encode_record(r)) for r in records])
    assert report.intact, report.breaks
    assert (report.first_seq, report.last_seq) == (1, 4)


@pytest.mark.parametrize("attack", ["remove", "reorder", "edit", "foreign"])
def test_a_tampered_chain_is_refused(node: SoftwareNode, attack: str) -> None:
    records = _chain(node, _policy_with_digest(node), 4)
    links = [encode_record(r) for r in records]
    if attack == "remove":
        del links[1]
    elif attack == "reorder":
        links[1], links[2] = links[2], links[1]
    elif attack == "edit":  # a valid record, re-encoded with another message
        links[1] = encode_record(replace(records[1], message="all good"))
    else:
        links[2] = encode_record(replace(records[2], agent_id="edge-2"))
    report = check_chain("edge-1", [RecordLink(canonical=link) for link in links])
    assert not report.intact


def test_a_fold_keeps_the_chain_linked(node: SoftwareNode) -> None:
    records = _chain(node, _policy_with_digest(node), 5)
    digests = [record_digest(encode_record(r)) for r in records]
    fold = FoldLink(first_seq=2, last_seq=4, prev=digests[0], head=digests[3])
    links: list[Link] = [
        RecordLink(canonical=encode_record(records[0])),
        fold,
        RecordLink(canonical=encode_record(records[4])),
    ]
    assert check_chain("edge-1", links).intact
    wrong = replace(fold, head=digests[2])
    assert not check_chain("edge-1", [links[0], wrong, links[2]]).intact


def test_records_reverify_offline(node: SoftwareNode) -> None:
    policy = _policy_with_digest(node)
    node.measure("/usr/bin/sshd", b"sshd")
    for record in _chain(node, policy, 3):
        again = reverify_record(record, ak=node.ak.public, policy=policy)
        assert again.consistent, again.mismatches
        assert again.not_checked == ()


def test_a_recorded_failure_reverifies_as_the_same_failure(node: SoftwareNode) -> None:
    policy = _policy_with_digest(node)
    node.measure("/tmp/evil", b"payload")
    record = _chain(node, policy, 1)[0]
    assert record.reason == "ima_entry_not_allowed"
    assert reverify_record(record, ak=node.ak.public, policy=policy).consistent


def test_a_record_whose_verdict_was_changed_does_not_reverify(node: SoftwareNode) -> None:
    policy = _policy_with_digest(node)
    node.measure("/tmp/evil", b"payload")
    failed = _chain(node, policy, 1)[0]
    forged = replace(
        failed,
        outcome=Outcome.PASSED,
        reason=None,
        checks=tuple(
            replace(c, verdict=c.verdict.PASSED, reason=None)
            for c in failed.checks
            if c.verdict.value != "skipped"
        ),
    )
    again = reverify_record(forged, ak=node.ak.public, policy=policy)
    assert not again.consistent


def test_a_record_reverified_against_another_key_or_policy_is_a_mismatch(
    node: SoftwareNode,
) -> None:
    policy = _policy_with_digest(node)
    record = _chain(node, policy, 1)[0]
    other = SoftwareNode()
    assert not reverify_record(record, ak=other.ak.public, policy=policy).consistent
    edited = replace(policy, digest=hashlib.sha256(b"another document").digest())
    assert not reverify_record(record, ak=node.ak.public, policy=edited).consistent


def test_evidence_edited_inside_a_record_does_not_reverify(node: SoftwareNode) -> None:
    policy = _policy_with_digest(node)
    record = _chain(node, policy, 1)[0]
    assert record.evidence is not None
    lying = replace(record, evidence=replace(record.evidence, ima_lines=()))
    assert not reverify_record(lying, ak=node.ak.public, policy=policy).consistent


def test_record_times_are_utc(node: SoftwareNode) -> None:
    record = _chain(node, _policy_with_digest(node), 1)[0]
    assert decode_record(encode_record(record)).ended_at.tzinfo is UTC
    assert datetime.now(UTC) > record.ended_at - timedelta(days=365 * 10)


_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"])
    | st.sampled_from(["\ue000", "\U0001f600", "\x00", "\u2028", '"', "\\"]),
    max_size=12,
)


def test_the_location_summary_keeps_its_accuracy_and_old_records_keep_their_bytes(
    node: SoftwareNode,
) -> None:
    """A summary with the fix's accuracy round-trips in centimetres; one without it (a record
    from before accuracy was kept) encodes exactly as it did, so old chains still link."""
    record = _chain(node, _policy_with_digest(node), 1)[0]
    summary = LocationSummary(
        decision="uncertain", zone_id="USA", distance_m=12.34, accuracy_m=25.5
    )
    with_accuracy = replace(record, location=summary)
    decoded = decode_record(encode_record(with_accuracy))
    assert decoded.location == summary
    old = replace(record, location=replace(summary, accuracy_m=None))
    body = json.loads(encode_record(old))
    assert body["location"] == {"decision": "uncertain", "zone": "USA", "distance_cm": 1234}
    assert decode_record(encode_record(old)).location == replace(summary, accuracy_m=None)


@given(
    message=_text,
    details=st.dictionaries(_text, _text, max_size=3),
    lines=st.lists(st.binary(max_size=24), max_size=3),
    distance=st.floats(min_value=-1e6, max_value=1e6),
)
# keys that sort apart by code point and by UTF-16 unit (JCS's order)
@example(message="", details={"\ue000": "a", "\U0001f600": "b"}, lines=[b"\xff"], distance=0.5)
def test_a_record_s_bytes_are_rfc8785(
    message: str, details: dict[str, str], lines: list[bytes], distance: float
) -> None:
    """``encode_record`` skips the canonical encoder's check: its bytes must still be exactly
    the reference encoder's for whatever text an agent or a check put in the record."""
    record = _base_record()
    assert record.evidence is not None
    ima = tuple(line.decode("utf-8", "surrogateescape") for line in lines)
    record = replace(
        record,
        message=message,
        details=details,
        evidence=replace(record.evidence, ima_lines=ima),
        location=LocationSummary(decision="inside", zone_id=message, distance_m=distance),
    )
    encoded = encode_record(record)
    assert rfc8785.dumps(json.loads(encoded)) == encoded
    assert decode_record(encoded).message == message
