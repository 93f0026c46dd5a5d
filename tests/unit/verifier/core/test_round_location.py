"""Proof-of-Geofencing inside a round: location evidence is checked, remembered on the track, and
bound to the quote (a quote made without it does not verify)."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import replace

from geoattest.wire import quote_qualifying_data
from geofence import Fix, LocationEvidence, LocationPolicy, encode_evidence
from tests.unit.verifier.core.test_location import SoftKey, constant_cn0, countries, novato, signed
from tests.unit.verifier.core.test_round import ALLOWED, SoftwareNode, _policy
from tpm import Alg, TpmPublic
from verifier.core.location import LocationRoundPolicy
from verifier.core.policy import AttestationPolicy
from verifier.core.round import RoundEvidence, RoundMemory, RoundResult, verify_round
from verifier.core.states import Outcome


def _geofenced(node: SoftwareNode, zone: str) -> AttestationPolicy:
    location = LocationRoundPolicy(thresholds=LocationPolicy(), zones=countries(), zone_ids=(zone,))
    return replace(_policy(node, ALLOWED), location=location)


def _answer(
    node: SoftwareNode,
    nonce: bytes,
    key: SoftKey,
    fix: Fix,
    *,
    bind: bool = True,
    send_location: bool = True,
) -> RoundEvidence:
    evidence, signature = signed(fix, key, nonce)
    node.tick()
    values = {0: node.pcr0, 10: node.pcr10}
    qualifying = quote_qualifying_data(nonce, evidence if bind else None)
    attest, quote_signature = node.ak.quote(qualifying, {Alg.SHA256: values})
    return RoundEvidence(
        nonce=nonce,
        attest=attest,
        signature=quote_signature,
        pcrs={"sha256": values},
        ima_offset=0,
        ima_lines=node.log,
        location=evidence if send_location else None,
        location_signature=signature if send_location else None,
    )


def _round(
    node: SoftwareNode,
    policy: AttestationPolicy,
    key: SoftKey,
    fix: Fix,
    *,
    location_key: TpmPublic | None = None,
    **answer: bool,
) -> RoundResult:
    nonce = os.urandom(32)
    assert fix.utc is not None
    return verify_round(
        _answer(node, nonce, key, fix, **answer),
        ak=node.ak.public,
        policy=policy,
        previous=RoundMemory(),
        now=fix.utc + dt.timedelta(seconds=1),
        location_key=location_key or key.public,
    )


def test_signed_fix_inside_the_zone_passes_and_is_remembered() -> None:
    node, key = SoftwareNode(), SoftKey.new()
    result = _round(node, _geofenced(node, "USA"), key, novato())
    assert result.outcome is Outcome.PASSED, result.message
    assert result.location is not None
    assert result.location.decision == "inside"
    assert result.location.zone_id == "USA"
    assert len(result.memory.location_track) == 1


def test_fix_outside_the_zone_fails() -> None:
    node, key = SoftwareNode(), SoftKey.new()
    result = _round(node, _geofenced(node, "DEU"), key, novato())
    assert result.outcome is Outcome.INTEGRITY_FAILURE
    assert result.reason == "location_outside_zone"


def test_quote_that_does_not_bind_the_location_fails() -> None:
    node, key = SoftwareNode(), SoftKey.new()
    result = _round(node, _geofenced(node, "USA"), key, novato(), bind=False)
    assert result.reason == "nonce_mismatch"


def test_location_signed_by_another_key_fails() -> None:
    node, key = SoftwareNode(), SoftKey.new()
    result = _round(node, _geofenced(node, "USA"), key, novato(), location_key=SoftKey.new().public)
    assert result.reason == "location_signature_invalid"


def test_agent_without_location_key_or_evidence_fails() -> None:
    node, key = SoftwareNode(), SoftKey.new()
    policy = _geofenced(node, "USA")
    nonce = os.urandom(32)
    fix = novato()
    assert fix.utc is not None
    no_key = verify_round(
        _answer(node, nonce, key, fix),
        ak=node.ak.public,
        policy=policy,
        previous=RoundMemory(),
        now=fix.utc,
        location_key=None,
    )
    assert no_key.reason == "location_missing"
    no_evidence = _round(node, policy, key, fix, send_location=False, bind=False)
    assert no_evidence.reason == "location_missing"


def test_constant_cn0_fails_the_round() -> None:
    """Evidence signed without the agent's screen: the verifier's own C/N0 check stops it."""
    node, key = SoftwareNode(), SoftKey.new()
    result = _round(node, _geofenced(node, "USA"), key, constant_cn0(novato()))
    assert result.outcome is Outcome.INTEGRITY_FAILURE
    assert result.reason == "location_implausible"
    assert "location_cn0_uniform" in result.message
    assert result.details["reason"] == "location_cn0_uniform"  # the event names the check


def test_v1_evidence_remembered_before_the_upgrade_does_not_fail_the_round() -> None:
    """The track persisted before evidence v2 still decodes; only a round's own evidence must
    be v2."""
    node, key = SoftwareNode(), SoftKey.new()
    old = replace(
        LocationEvidence.from_fix(novato(4), nonce=os.urandom(32)),
        version=1,
        rmc_status=None,
        cn0_dbhz=(),
    )
    fix = novato()
    nonce = os.urandom(32)
    assert fix.utc is not None
    result = verify_round(
        _answer(node, nonce, key, fix),
        ak=node.ak.public,
        policy=_geofenced(node, "USA"),
        previous=RoundMemory(location_track=(encode_evidence(old),)),
        now=fix.utc + dt.timedelta(seconds=1),
        location_key=key.public,
    )
    assert result.outcome is Outcome.PASSED, result.message
    assert len(result.memory.location_track) == 2
