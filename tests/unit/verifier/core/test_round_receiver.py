"""The GNSS receiver inside a round: the receiver the signed evidence names is compared with the
enrolled one; ``record`` passes and reports the change once, ``require`` fails the location check.

Each attack test fails if the comparison in ``verifier.core.receiver.check_receiver`` (or its call
in ``verifier.core.location.check_location``) is removed.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import replace

import pytest

from geoattest.errors import LocationEvidenceInvalid, PolicyInvalid
from geofence import (
    Fix,
    GnssReceiver,
    LocationEvidence,
    LocationPolicy,
    ReceiverIdentity,
    SourceKind,
    encode_evidence,
)
from tests.unit.verifier.core.test_location import SoftKey, countries, novato
from tests.unit.verifier.core.test_round import ALLOWED, SoftwareNode, _policy
from tests.unit.verifier.core.test_round_location import _geofenced_round
from verifier.core.location import (
    LocationRoundPolicy,
    check_location,
    location_policy_from_mapping,
)
from verifier.core.policy import AttestationPolicy
from verifier.core.reasons import Reason
from verifier.core.receiver import ReceiverRule
from verifier.core.record import decode_record, encode_record
from verifier.core.record_types import EvidenceRecord
from verifier.core.reverify import reverify_record
from verifier.core.round import verify_round
from verifier.core.round_record import RecordOrigin, round_record
from verifier.core.round_types import Check, RoundMemory, RoundResult, Verdict

ENROLLED = ("u-blox AG - www.u-blox.com", "HW UBX-M80xx 00080000", "PROTVER 15.00")
SWAPPED = ("u-blox AG - www.u-blox.com", "HW UBX-G70xx 00070000", "PROTVER 14.00")


def _policy_with(node: SoftwareNode, rule: ReceiverRule) -> AttestationPolicy:
    location = LocationRoundPolicy(
        thresholds=LocationPolicy(), zones=countries(), zone_ids=("USA",), receiver=rule
    )
    return replace(_policy(node, ALLOWED), location=location)


def _fix(texts: tuple[str, ...], index: int = 5) -> Fix:
    fix = novato(index)
    return replace(fix, receiver=ReceiverIdentity(texts=texts) if texts else None)


def _evidence(fix: Fix, source: SourceKind = SourceKind.SERIAL) -> bytes:
    return encode_evidence(LocationEvidence.from_fix(fix, nonce=os.urandom(32), source=source))


def _enrolled(texts: tuple[str, ...] = ENROLLED) -> GnssReceiver:
    return GnssReceiver(source=SourceKind.SERIAL, texts=texts, device="/dev/ttyACM0")


def _round(
    rule: ReceiverRule,
    fix: Fix,
    *,
    enrolled: GnssReceiver | None,
    memory: RoundMemory | None = None,
    source: SourceKind = SourceKind.SERIAL,
) -> RoundResult:
    node, key = SoftwareNode(), SoftKey.new()
    assert fix.utc is not None
    return _geofenced_round(
        node,
        _policy_with(node, rule),
        key,
        _evidence(fix, source),
        memory or RoundMemory(),
        fix.utc + dt.timedelta(seconds=1),
        receiver=enrolled,
    )


def test_the_enrolled_receiver_passes_without_a_finding() -> None:
    for rule in ReceiverRule:
        result = _round(rule, _fix(ENROLLED), enrolled=_enrolled())
        assert result.outcome == "passed", result.message
        location = result.check(Check.LOCATION)
        assert location is not None
        assert location.reason is None
        assert result.notice is None


def test_a_swapped_receiver_under_record_passes_and_is_reported_once() -> None:
    """The default: allowed, visible on the location check's result, one notice per change."""
    first = _round(ReceiverRule.RECORD, _fix(SWAPPED), enrolled=_enrolled())
    assert first.outcome == "passed", first.message
    location = first.check(Check.LOCATION)
    assert location is not None
    assert location.verdict is Verdict.PASSED
    assert location.reason is Reason.GNSS_RECEIVER_CHANGED
    assert "UBX-G70xx" in location.message
    assert "UBX-M80xx" in location.message
    assert first.notice is not None
    assert first.notice.reason is Reason.GNSS_RECEIVER_CHANGED
    enrolled = _enrolled()
    assert first.notice.details["enrolled_receiver"] == enrolled.fingerprint().hex()
    # The next round reads the same (swapped) receiver: still on the check, no second notice.
    again = _round(ReceiverRule.RECORD, _fix(SWAPPED, 6), enrolled=enrolled, memory=first.memory)
    assert again.outcome == "passed", again.message
    location = again.check(Check.LOCATION)
    assert location is not None
    assert location.reason is Reason.GNSS_RECEIVER_CHANGED
    assert again.notice is None


def test_a_swapped_receiver_under_require_fails_the_location_check() -> None:
    """Attack: the enrolled receiver replaced (by a spoofer's, or another node's)."""
    result = _round(ReceiverRule.REQUIRE, _fix(SWAPPED), enrolled=_enrolled())
    assert result.outcome == "integrity_failure"
    assert result.reason is Reason.GNSS_RECEIVER_CHANGED
    location = result.check(Check.LOCATION)
    assert location is not None
    assert location.verdict is Verdict.FAILED
    assert location.reason is Reason.GNSS_RECEIVER_CHANGED


def test_another_source_kind_under_require_fails() -> None:
    """Attack: the same banner replayed through another path (a gpsd fed by gpsfake)."""
    result = _round(
        ReceiverRule.REQUIRE, _fix(ENROLLED), enrolled=_enrolled(), source=SourceKind.GPSD
    )
    assert result.reason is Reason.GNSS_RECEIVER_CHANGED


def test_require_refuses_receivers_that_cannot_be_told_apart() -> None:
    """Attack: a receiver that hides its banner, or an agent that enrolled none."""
    silent = _round(ReceiverRule.REQUIRE, _fix(()), enrolled=_enrolled())
    assert silent.reason is Reason.GNSS_RECEIVER_UNIDENTIFIED
    both_silent = _round(ReceiverRule.REQUIRE, _fix(()), enrolled=_enrolled(()))
    assert both_silent.reason is Reason.GNSS_RECEIVER_UNIDENTIFIED
    none_enrolled = _round(ReceiverRule.REQUIRE, _fix(ENROLLED), enrolled=None)
    assert none_enrolled.reason is Reason.GNSS_RECEIVER_UNIDENTIFIED


def test_record_with_nothing_enrolled_compares_nothing() -> None:
    """An agent (or registrar) from before receivers were enrolled: nothing to compare."""
    result = _round(ReceiverRule.RECORD, _fix(SWAPPED), enrolled=None)
    assert result.outcome == "passed", result.message
    assert result.notice is None


def test_an_unidentified_receiver_is_recorded_not_failed() -> None:
    result = _round(ReceiverRule.RECORD, _fix(()), enrolled=_enrolled(()))
    assert result.outcome == "passed", result.message
    assert result.notice is None


def test_the_policy_setting_parses_and_defaults_to_record() -> None:
    zones = countries()
    assert location_policy_from_mapping({"zones": ["USA"]}, zones).receiver is ReceiverRule.RECORD
    strict = location_policy_from_mapping({"zones": ["USA"], "receiver": "require"}, zones)
    assert strict.receiver is ReceiverRule.REQUIRE
    for bad in ("strict", 1, None, ""):
        with pytest.raises(PolicyInvalid, match="receiver must be"):
            location_policy_from_mapping({"zones": ["USA"], "receiver": bad}, zones)


def test_a_receiver_relabelled_in_the_evidence_after_signing_is_refused() -> None:
    """Attack: a swapped receiver's evidence, its ``receiver`` field rewritten to the enrolled
    banner after the location key signed it."""
    key = SoftKey.new()
    fix = _fix(SWAPPED)
    assert fix.utc is not None
    nonce = os.urandom(32)
    honest = LocationEvidence.from_fix(fix, nonce=nonce, source=SourceKind.SERIAL)
    signature = key.sign(encode_evidence(honest))
    relabelled = encode_evidence(replace(honest, receiver=" | ".join(ENROLLED)))
    policy = _policy_with(SoftwareNode(), ReceiverRule.REQUIRE).location
    assert policy is not None
    with pytest.raises(LocationEvidenceInvalid, match="not signed by the agent's location key"):
        check_location(
            evidence=relabelled,
            signature=signature,
            location_key=key.public,
            nonce=nonce,
            policy=policy,
            track=(),
            now=fix.utc + dt.timedelta(seconds=1),
            enrolled_receiver=_enrolled(),
        )


def _recorded(rule: ReceiverRule, fix: Fix, enrolled: GnssReceiver) -> EvidenceRecord:
    """One round as ``round_record`` keeps it, through its canonical bytes."""
    node, key = SoftwareNode(), SoftKey.new()
    policy = replace(_policy_with(node, rule), digest=bytes(32))
    evidence = _evidence(fix)
    answer = node.geofenced_answer(evidence, key.sign(evidence))
    assert fix.utc is not None
    judged_at = fix.utc + dt.timedelta(seconds=1)
    result = verify_round(
        answer,
        ak=node.ak.public,
        policy=policy,
        previous=RoundMemory(),
        now=judged_at,
        location_key=key.public,
        receiver=enrolled,
    )
    draft = round_record(
        agent_id="edge-1",
        round_id=os.urandom(16).hex(),
        started_at=judged_at,
        ended_at=judged_at,
        judged_at=judged_at,
        origin=RecordOrigin(verifier_id="v"),
        location_key=key.public,
        evidence=answer,
        result=result,
        receiver=enrolled,
        ak=node.ak.public,
        policy=policy,
        previous=RoundMemory(),
    )
    record = decode_record(encode_record(draft))
    again = reverify_record(record, ak=node.ak.public, policy=policy, location_key=key.public)
    assert again.consistent, again.mismatches
    return record


def test_a_record_keeps_the_enrolled_receiver_and_re_verifies_from_itself_alone() -> None:
    """The round compared with the enrolled receiver; the record names it, so a re-verification
    (residency proofs, ``verify-bundle``) reproduces the same verdict without the registrar."""
    enrolled = _enrolled()
    failed = _recorded(ReceiverRule.REQUIRE, _fix(SWAPPED), enrolled)
    assert failed.reason is Reason.GNSS_RECEIVER_CHANGED
    assert failed.context is not None
    assert failed.context.receiver is not None
    assert failed.context.receiver.same_as(enrolled)
    passed = _recorded(ReceiverRule.REQUIRE, _fix(ENROLLED), enrolled)
    assert passed.outcome == "passed"
