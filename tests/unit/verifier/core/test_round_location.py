"""Proof-of-Geofencing inside a round: location evidence is checked, remembered on the track, and
bound to the quote (a quote made without it does not verify)."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import replace

from geoattest.pcr_banks import PcrBank
from geoattest.wire import quote_qualifying_data
from geofence import (
    Fix,
    GnssReceiver,
    LocationEvidence,
    LocationPolicy,
    SourceKind,
    encode_evidence,
)
from tests.unit.geofence.captures import fixes
from tests.unit.verifier.core.test_location import SoftKey, constant_cn0, countries, novato, signed
from tests.unit.verifier.core.test_round import ALLOWED, SoftwareNode, _policy
from tpm import Alg, TpmPublic
from verifier.core.location import LocationRoundPolicy
from verifier.core.policy import AttestationPolicy
from verifier.core.round import verify_round
from verifier.core.round_types import RoundEvidence, RoundMemory, RoundResult
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
        pcrs={PcrBank.SHA256: values},
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
        LocationEvidence.from_fix(novato(4), nonce=os.urandom(32), source=SourceKind.SERIAL),
        version=1,
        rmc_status=None,
        cn0_dbhz=(),
        source=None,
        vertical_accuracy_m=None,
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


def _geofenced_round(
    node: SoftwareNode,
    policy: AttestationPolicy,
    key: SoftKey,
    evidence: bytes,
    memory: RoundMemory,
    now: dt.datetime,
    *,
    receiver: GnssReceiver | None = None,
) -> RoundResult:
    """A round whose location evidence is ``evidence`` as given (signed here by ``key``);
    ``receiver``: the enrolled GNSS receiver."""
    offset = memory.ima_offset_for(policy.ima_banks)
    answer = node.geofenced_answer(evidence, key.sign(evidence), offset)
    return verify_round(
        answer,
        ak=node.ak.public,
        policy=policy,
        previous=memory,
        now=now,
        location_key=key.public,
        receiver=receiver,
    )


def _evidence(fix: Fix, *, source: str = "serial", version: int = 3) -> bytes:
    ev = LocationEvidence.from_fix(fix, nonce=os.urandom(32), source=SourceKind(source))
    if version == 2:  # what an agent from before v3 signs
        ev = replace(ev, version=2, source=None, vertical_accuracy_m=None)
    return encode_evidence(ev)


def test_a_cold_start_altitude_jump_is_refused_by_the_verifier_itself() -> None:
    """Attack (or a receiver's cold start): Quectel EG25-G fix at -249.9 m, 200.8 m below the
    signed fix of the round 9 s before (vertical accuracy 30 and 33 m). Evidence v3 carries the
    vertical accuracy, so the verifier's own vertical-speed check refuses it; the absolute range
    (-500..9000 m) alone would let it pass."""
    node, key = SoftwareNode(), SoftKey.new()
    policy = _geofenced(node, "TUR")
    quectel = fixes("quectel-eg25-g.log")
    before, cold = quectel[14], quectel[15]
    assert (before.altitude_m, cold.altitude_m) == (-49.1, -249.9)
    assert before.utc is not None
    assert cold.utc is not None
    first = _geofenced_round(
        node, policy, key, _evidence(before), RoundMemory(), before.utc + dt.timedelta(seconds=1)
    )
    assert first.outcome is Outcome.PASSED, first.message
    second = _geofenced_round(
        node, policy, key, _evidence(cold), first.memory, cold.utc + dt.timedelta(seconds=1)
    )
    assert second.outcome is Outcome.INTEGRITY_FAILURE
    assert second.reason == "location_implausible"
    assert second.details["reason"] == "location_altitude"
    assert "200.8 m in 9.0 s" in second.message
    # The same fix after a quiet track (no earlier fix to compare with) passes: it is the jump.
    alone = _geofenced_round(
        node, policy, key, _evidence(cold), RoundMemory(), cold.utc + dt.timedelta(seconds=1)
    )
    assert alone.outcome is Outcome.PASSED, alone.message


def test_a_replayed_file_is_refused_unless_the_policy_accepts_files() -> None:
    """A node configured to replay a capture (``--gnss file:…``) says so in its evidence: the
    production default refuses it; the dev fleet's and the tests' policies accept it."""
    node, key = SoftwareNode(), SoftKey.new()
    fix = novato()
    assert fix.utc is not None
    now = fix.utc + dt.timedelta(seconds=1)
    replayed = _evidence(fix, source="file")
    production = _geofenced(node, "USA")
    refused = _geofenced_round(node, production, key, replayed, RoundMemory(), now)
    assert refused.outcome is Outcome.INTEGRITY_FAILURE
    assert refused.details["reason"] == "location_source"
    assert production.location is not None
    dev = replace(
        production,
        location=replace(
            production.location,
            thresholds=LocationPolicy(accepted_sources=frozenset({SourceKind.FILE})),
        ),
    )
    accepted = _geofenced_round(node, dev, key, _evidence(fix, source="file"), RoundMemory(), now)
    assert accepted.outcome is Outcome.PASSED, accepted.message
    for kind in ("serial", "gpsd"):
        passed = _geofenced_round(
            node, production, key, _evidence(fix, source=kind), RoundMemory(), now
        )
        assert passed.outcome is Outcome.PASSED, passed.message


def test_v2_evidence_is_refused_as_a_rounds_evidence() -> None:
    """v2 lacks the source kind and the vertical accuracy: accepting it would let any node opt
    out of both checks by sending v2 (as v1 was refused once v2 existed)."""
    node, key = SoftwareNode(), SoftKey.new()
    fix = novato()
    assert fix.utc is not None
    v2 = _evidence(fix, version=2)
    assert b'"v":2' in v2
    result = _geofenced_round(
        node, _geofenced(node, "USA"), key, v2, RoundMemory(), fix.utc + dt.timedelta(seconds=1)
    )
    assert result.reason == "location_signature_invalid"
    assert "v2 is refused" in result.message


def test_v2_evidence_remembered_before_the_upgrade_does_not_fail_the_round() -> None:
    node, key = SoftwareNode(), SoftKey.new()
    fix = novato()
    assert fix.utc is not None
    old = _evidence(novato(4), version=2)
    result = _geofenced_round(
        node,
        _geofenced(node, "USA"),
        key,
        _evidence(fix),
        RoundMemory(location_track=(old,)),
        fix.utc + dt.timedelta(seconds=1),
    )
    assert result.outcome is Outcome.PASSED, result.message


# --- the decision of a failed location check is kept (the record, the map and the table) -------


def test_an_uncertain_fix_fails_and_keeps_its_decision() -> None:
    """A fix whose accuracy disc crosses the border is ``uncertain``: never inside, so the round
    fails, and the result (then the record, the API and the map) says ``uncertain``, for which
    zone, how far from its border and how accurate the fix was."""
    node, key = SoftwareNode(), SoftKey.new()
    wide = replace(novato(), horizontal_accuracy_m=200_000.0)  # reaches the Pacific coast
    result = _round(node, _geofenced(node, "USA"), key, wide)
    assert result.outcome is Outcome.INTEGRITY_FAILURE
    assert result.reason == "location_outside_zone"
    assert "uncertain for zone USA" in result.message
    assert result.location is not None
    assert (result.location.decision, result.location.zone_id) == ("uncertain", "USA")
    assert 0 < result.location.distance_m < 200_000.0
    assert result.location.accuracy_m == 200_000.0
    assert result.memory.location_track == ()  # a failed fix never joins the track


def test_a_fix_outside_keeps_the_nearest_zones_decision() -> None:
    node, key = SoftwareNode(), SoftKey.new()
    result = _round(node, _geofenced(node, "DEU"), key, novato())
    assert result.reason == "location_outside_zone"
    assert result.location is not None
    assert (result.location.decision, result.location.zone_id) == ("outside", "DEU")
    assert result.location.distance_m > 100_000  # a lower bound: far beyond the 2.8 m disc


def test_an_implausible_fix_keeps_its_decision_and_still_fails() -> None:
    """A stale fix is authentic (signed by the location key) but fails plausibility: its
    decision is shown, the round fails all the same."""
    node, key = SoftwareNode(), SoftKey.new()
    fix = novato()
    assert fix.utc is not None
    nonce = os.urandom(32)
    result = verify_round(
        _answer(node, nonce, key, fix),
        ak=node.ak.public,
        policy=_geofenced(node, "USA"),
        previous=RoundMemory(),
        now=fix.utc + dt.timedelta(minutes=5),
        location_key=key.public,
    )
    assert result.outcome is Outcome.INTEGRITY_FAILURE
    assert result.reason == "location_stale"
    assert result.location is not None
    assert result.location.decision == "inside"


def test_an_unauthenticated_fix_keeps_no_decision() -> None:
    """Evidence not signed by the agent's location key is what an attacker claims: no decision
    is kept for it (nothing is drawn or shown as the node's)."""
    node, key = SoftwareNode(), SoftKey.new()
    result = _round(node, _geofenced(node, "USA"), key, novato(), location_key=SoftKey.new().public)
    assert result.reason == "location_signature_invalid"
    assert result.location is None


def _round_with_hints(
    node: SoftwareNode, policy: AttestationPolicy, key: SoftKey, fix: Fix, hints: object
) -> RoundResult:
    nonce = os.urandom(32)
    assert fix.utc is not None
    return verify_round(
        _answer(node, nonce, key, fix),
        ak=node.ak.public,
        policy=policy,
        previous=RoundMemory(),
        now=fix.utc + dt.timedelta(seconds=1),
        location_key=key.public,
        zone_hints=hints,  # type: ignore[arg-type]  # a test of what the engine hands back
    )


def test_the_next_round_starts_from_the_last_full_zone_decision() -> None:
    """A round hands back its full zone decisions; the next one, handed them, decides the same
    as a round decided in full, and keeps the reference point decided in full."""
    node, key = SoftwareNode(), SoftKey.new()
    policy = _geofenced(node, "USA")
    first = _round(node, policy, key, novato())
    assert set(first.zone_hints) == {"USA"}
    again = _round_with_hints(node, policy, key, novato(), first.zone_hints)
    full = _round(node, policy, key, novato())
    assert again.outcome is full.outcome is Outcome.PASSED
    assert again.location is not None
    assert full.location is not None
    assert again.location.decision == full.location.decision == "inside"
    assert again.zone_hints["USA"] is first.zone_hints["USA"]  # carried, not recomputed
    assert again.location.distance_m <= full.location.distance_m


def test_hints_for_another_zone_never_pass_a_fix_outside_the_policys_zone() -> None:
    """The policy moved the agent from the USA to Germany's zone: the USA hints are not used,
    the fix is decided in full and fails."""
    node, key = SoftwareNode(), SoftKey.new()
    usa = _round(node, _geofenced(node, "USA"), key, novato())
    result = _round_with_hints(node, _geofenced(node, "DEU"), key, novato(), usa.zone_hints)
    assert result.outcome is Outcome.INTEGRITY_FAILURE
    assert result.reason == "location_outside_zone"
    assert "DEU" not in result.zone_hints or not result.zone_hints["DEU"].inside
