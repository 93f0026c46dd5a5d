"""``build_claims`` from genuine-format passed rounds: every claim traces to the record, tiers are
never stronger than what was checked, and a token never outlives the lease or the fix."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import replace

import pytest

from geoattest.errors import AgentNotAttested, TokenLocationUnavailable
from geofence import SourceKind, decode_evidence
from tests.unit.verifier.tokens.issuing import MAX_AGE, claims_for, passed_round
from tpm import parse_tpms_attest
from verifier.core.round_types import Check, CheckResult, Verdict
from verifier.core.states import Outcome
from verifier.tokens.vocabulary import EarStatus, TokenType, WorkloadMeasure


def _submods(body: dict[str, object]) -> dict[str, dict[str, object]]:
    submods = body["submods"]
    assert isinstance(submods, dict)
    return submods


def test_every_claim_traces_to_the_record() -> None:
    passed = passed_round(geo=True)
    body = claims_for(passed).body
    record = passed.record
    assert body["geoattest.record"] == {
        "agent_id": "edge-1",
        "seq": record.seq,
        "round_id": record.round_id,
        "digest": passed.digest.hex(),
        "ended_at": int(record.ended_at.timestamp()),
    }
    host = _submods(body)["host"]["geoattest.host"]
    assert isinstance(host, dict)
    assert record.evidence is not None
    clock = parse_tpms_attest(record.evidence.attest).clock_info
    assert (host["reset_count"], host["restart_count"]) == (clock.reset_count, clock.restart_count)
    assert host["ak_name"] == (record.ak_name or b"").hex()
    assert host["checks"] == {c.check.value: c.verdict.value for c in record.checks}
    geo = _submods(body)["geo"]
    details = geo["geoattest.geo"]
    assert isinstance(details, dict)
    assert record.location is not None
    assert details["decision"] == "inside"
    assert details["distance_m"] == round(record.location.distance_m, 2)
    assert isinstance(details["zone"], dict)
    assert details["zone"]["id"] == record.location.zone_id == "USA"
    location = geo["location"]
    assert isinstance(location, dict)
    assert set(location) == {"latitude", "longitude", "accuracy", "timestamp"}
    assert body["eat_profile"] == TokenType.POG.profile
    assert body["aud"] == "model-keys"


def test_affirming_only_when_everything_was_checked() -> None:
    passed = passed_round(geo=True)
    assert claims_for(passed).status is EarStatus.AFFIRMING
    # A policy without a runtime policy: IMA skipped, so the host vouches for less.
    skipped = tuple(
        replace(c, verdict=Verdict.SKIPPED) if c.check is Check.IMA else c
        for c in passed.record.checks
    )
    weaker = replace(passed, record=replace(passed.record, checks=skipped))
    claims = claims_for(weaker)
    assert claims.status is EarStatus.WARNING
    host = _submods(claims.body)["host"]
    assert host["ear.status"] == "warning"
    assert host["ear.trustworthiness-vector"] == {
        "instance-identity": 2,
        "hardware": 2,
        "configuration": 2,
        "executables": 0,
    }


@pytest.mark.parametrize(
    ("measured", "tier", "executables"),
    [
        (WorkloadMeasure.IMA_ALLOWLISTED, "affirming", 2),
        (WorkloadMeasure.IMA_EXCLUDED, "warning", 32),
        (WorkloadMeasure.AGENT, "warning", 33),
    ],
)
def test_the_workload_tier_says_how_the_hash_is_known(
    measured: WorkloadMeasure, tier: str, executables: int
) -> None:
    claims = claims_for(passed_round(geo=False), TokenType.POR, measured_by=measured)
    workload = _submods(claims.body)["workload"]
    assert workload["ear.status"] == tier
    assert workload["ear.trustworthiness-vector"] == {"executables": executables}
    assert claims.status.value == tier
    assert set(_submods(claims.body)) == {"host", "workload"}


def test_a_replayed_capture_is_a_weaker_geo_claim() -> None:
    claims = claims_for(passed_round(geo=True, source=SourceKind.FILE))
    geo = _submods(claims.body)["geo"]
    assert geo["ear.status"] == "warning"
    assert geo["ear.trustworthiness-vector"] == {"sourced-data": 32}


def test_the_lifetime_never_passes_the_lease_the_fix_or_the_ttl() -> None:
    passed = passed_round(geo=True)
    ended = passed.record.ended_at
    lease_end = ended + dt.timedelta(seconds=20)  # claims_for's lease
    assert passed.record.evidence is not None
    claims = claims_for(passed)
    assert claims.expires_at <= lease_end
    assert claims_for(
        passed, ttl=dt.timedelta(seconds=5)
    ).expires_at <= claims.issued_at + dt.timedelta(seconds=5)
    por = claims_for(passed_round(geo=False), TokenType.POR)
    assert por.expires_at - por.issued_at <= dt.timedelta(seconds=20)
    # Under a one-hour lease and TTL, the fix's 30 s of age are what ends the token.
    long_lease = claims_for(passed, ttl=dt.timedelta(hours=1), lease=dt.timedelta(hours=1))
    assert passed.record.evidence is not None
    fix = decode_evidence(passed.record.evidence.location or b"").utc
    assert long_lease.expires_at <= fix + MAX_AGE
    assert long_lease.expires_at > fix + MAX_AGE - dt.timedelta(seconds=1)


def test_no_token_on_a_lease_that_ends_now() -> None:
    passed = passed_round(geo=False)
    late = passed.record.ended_at + dt.timedelta(seconds=19, milliseconds=500)
    with pytest.raises(AgentNotAttested, match="too short"):
        claims_for(passed, TokenType.POR, at=late)


def test_no_pog_token_for_a_stale_fix() -> None:
    passed = passed_round(geo=True)
    late = passed.judged_at + MAX_AGE
    with pytest.raises(TokenLocationUnavailable, match="old"):
        claims_for(passed, at=late)


def test_no_pog_token_without_a_passed_location_check() -> None:
    passed = passed_round(geo=False)
    with pytest.raises(TokenLocationUnavailable):
        claims_for(passed, TokenType.POG)


def test_no_token_from_a_record_that_is_not_a_passed_round() -> None:
    passed = passed_round(geo=False)
    failed = replace(passed.record, outcome=Outcome.INTEGRITY_FAILURE)
    with pytest.raises(AgentNotAttested):
        claims_for(replace(passed, record=failed), TokenType.POR)
    one_failed = (*passed.record.checks[:-1], CheckResult(check=Check.IMA, verdict=Verdict.FAILED))
    with pytest.raises(AgentNotAttested, match="failed ima"):
        claims_for(replace(passed, record=replace(passed.record, checks=one_failed)), TokenType.POR)


def test_no_pog_token_when_the_location_check_did_not_pass() -> None:
    """The record names a zone, but its location check is not ``passed`` (skipped by a policy
    change, say): nothing vouches for the fix."""
    passed = passed_round(geo=True)
    checks = tuple(
        replace(c, verdict=Verdict.SKIPPED) if c.check is Check.LOCATION else c
        for c in passed.record.checks
    )
    unchecked = replace(passed, record=replace(passed.record, checks=checks))
    with pytest.raises(TokenLocationUnavailable, match="did not pass"):
        claims_for(unchecked)


def test_hidden_coordinates_keep_the_zone() -> None:
    claims = claims_for(passed_round(geo=True), disclose=False)
    geo = _submods(claims.body)["geo"]
    assert "location" not in geo
    assert geo["geoattest.geo"]["zone"]["id"] == "USA"  # type: ignore[index]


def test_nonce_and_cnf_are_claimed_only_when_given() -> None:
    passed = passed_round(geo=False)
    plain = claims_for(passed, TokenType.POR).body
    assert "eat_nonce" not in plain
    assert "cnf" not in plain
    bound = claims_for(passed, TokenType.POR, nonce=b"relying-party", cnf_jkt="jkt").body
    assert bound["eat_nonce"] == base64.urlsafe_b64encode(b"relying-party").rstrip(b"=").decode()
    assert bound["cnf"] == {"jkt": "jkt"}
