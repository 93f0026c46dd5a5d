"""``position_of``: the map draws a node only where authenticated location evidence put it."""

from __future__ import annotations

import datetime as dt

import pytest

from geofence.evidence import encode_evidence
from tests.unit.geofence.test_evidence import sample
from verifier.core.position import position_of
from verifier.core.reasons import Reason
from verifier.core.record import GENESIS
from verifier.core.record_types import EvidenceRecord, LocationSummary, RecordKind
from verifier.core.round_types import Check, CheckResult, RoundEvidence, Verdict
from verifier.core.states import AgentState, Outcome

AT = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)


def _record(
    check: CheckResult | None, *, location: bytes | None = None, decided: str | None = "inside"
) -> EvidenceRecord:
    evidence = RoundEvidence(
        nonce=b"n" * 16,
        attest=b"a",
        signature=b"s",
        pcrs={},
        ima_offset=0,
        ima_lines=(),
        location=encode_evidence(sample()) if location is None else location,
        location_signature=b"sig",
    )
    return EvidenceRecord(
        agent_id="edge-1",
        seq=3,
        kind=RecordKind.ROUND,
        round_id="r3",
        started_at=AT,
        ended_at=AT,
        prev=GENESIS,
        verifier_id="v",
        from_state=AgentState.ATTESTED,
        to_state=AgentState.ATTESTED,
        outcome=Outcome.PASSED,
        evidence=evidence,
        checks=(check,) if check is not None else (),
        location=(
            LocationSummary(decision=decided, zone_id="USA", distance_m=1200.0)
            if decided is not None
            else None
        ),
    )


def test_a_judged_fix_is_the_nodes_position_with_its_decision() -> None:
    position = position_of(_record(CheckResult(check=Check.LOCATION, verdict=Verdict.PASSED)))
    assert position is not None
    assert (position.latitude, position.longitude) == (38.110494, -122.626897)
    assert position.accuracy_m == 2.801
    assert (position.decision, position.zone_id, position.verdict) == ("inside", "USA", "passed")
    assert (position.round_id, position.seq) == ("r3", 3)


def test_a_fix_outside_its_zone_is_drawn_where_it_is() -> None:
    failed = CheckResult(
        check=Check.LOCATION, verdict=Verdict.FAILED, reason=Reason.LOCATION_OUTSIDE_ZONE
    )
    position = position_of(_record(failed, decided="outside"))
    assert position is not None
    assert (position.decision, position.reason) == ("outside", "location_outside_zone")


@pytest.mark.parametrize(
    "reason",
    [Reason.LOCATION_SIGNATURE_INVALID, Reason.LOCATION_NONCE_MISMATCH, Reason.LOCATION_MISSING],
)
def test_an_unauthenticated_fix_is_never_drawn(reason: Reason) -> None:
    failed = CheckResult(check=Check.LOCATION, verdict=Verdict.FAILED, reason=reason)
    assert position_of(_record(failed, decided=None)) is None


@pytest.mark.parametrize("verdict", [Verdict.NOT_RUN, Verdict.SKIPPED])
def test_a_fix_the_round_did_not_judge_is_never_drawn(verdict: Verdict) -> None:
    assert position_of(_record(CheckResult(check=Check.LOCATION, verdict=verdict))) is None
    assert position_of(_record(None)) is None


def test_undecodable_evidence_is_no_position() -> None:
    passed = CheckResult(check=Check.LOCATION, verdict=Verdict.PASSED)
    assert position_of(_record(passed, location=b"{not evidence")) is None


def test_an_uncertain_fix_is_drawn_uncertain_with_its_accuracy() -> None:
    """The border agent: its check failed on ``uncertain``, and the map and table say so."""
    record = _record(
        CheckResult(
            check=Check.LOCATION, verdict=Verdict.FAILED, reason=Reason.LOCATION_OUTSIDE_ZONE
        ),
        decided="uncertain",
    )
    position = position_of(record)
    assert position is not None
    assert (position.decision, position.zone_id, position.verdict) == (
        "uncertain",
        "USA",
        "failed",
    )
    assert position.reason == "location_outside_zone"
