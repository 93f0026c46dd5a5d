"""Step 5 of verifying one agent of a residency bundle (``verify_agent``): each full round
record re-verified (``verifier.core.reverify``) with its AK, policy, zones, location key and,
when the bundle holds the previous rounds, its location track."""

from __future__ import annotations

from collections.abc import Mapping

import tpm
from geoattest.errors import (
    BundleInvalid,
    QuoteSignatureInvalid,
    TpmFormatError,
)
from geofence import ZoneDecision, decode_evidence
from verifier.core.policy import AttestationPolicy
from verifier.core.record import track_digest
from verifier.core.record_types import EvidenceRecord, RecordKind
from verifier.core.reverify import reverify_record
from verifier.core.round import LOCATION_TRACK_LENGTH
from verifier.core.round_types import Check, Verdict
from verifier.core.states import Outcome
from verifier.export.agent_checks import (
    MEMORY_RESETS,
    NOT_JUDGED,
    TRACK_NOT_CHECKED,
    AgentChecks,
    FullRecord,
)
from verifier.export.results import Fix, Link, LinkKind

# --- 5. re-verification ----------------------------------------------------------------------


def reverify_records(
    records: Mapping[int, FullRecord],
    publics: Mapping[bytes, tpm.TpmPublic],
    policies: Mapping[bytes, AttestationPolicy | str],
    anchored: set[int],
    checks: AgentChecks,
) -> None:
    track: list[bytes] = []
    previous_seq: int | None = None
    for seq in sorted(records):
        full = records[seq]
        record = full.record
        if previous_seq is None or seq != previous_seq + 1:
            track = []  # a fold in between: the rounds' location evidence is not kept
            known = False
        else:
            known = True
        previous_seq = seq
        policy = policies.get(record.policy.sha256) if record.policy else None
        if isinstance(policy, AttestationPolicy):
            checks.location_required = checks.location_required or policy.location is not None
            checks.max_age = policy.max_age
        reverified, fix = _one(full, policy, publics, track if known else None, checks)
        if record.outcome is Outcome.PASSED and record.evidence is not None:
            if record.evidence.location is not None and fix is not None:
                track = [*track, record.evidence.location][-LOCATION_TRACK_LENGTH:]
        elif record.kind is RecordKind.OPERATOR and record.reason in MEMORY_RESETS:
            track = []  # the operator started the agent over: the verifier forgot its track
        checks.links.append(_link(full, fix, seq in anchored, reverified))


def _one(
    full: FullRecord,
    policy: AttestationPolicy | str | None,
    publics: Mapping[bytes, tpm.TpmPublic],
    track: list[bytes] | None,
    checks: AgentChecks,
) -> tuple[bool, Fix | None]:
    record = full.record
    if record.kind is not RecordKind.ROUND or record.evidence is None:
        return False, None
    if not isinstance(policy, AttestationPolicy):
        checks.skip(policy or "records whose policy is not in the bundle: not re-verified")
        return False, None
    ak = publics.get(record.ak_name) if record.ak_name else None
    if ak is None:
        return False, None
    location_key = publics.get(record.location_key_name) if record.location_key_name else None
    given = None
    context = record.context
    if track is not None and context is not None and len(track) >= context.track_length:
        candidate = track[len(track) - context.track_length :] if context.track_length else []
        if track_digest(candidate) == context.track_sha256:
            given = candidate
    again = reverify_record(record, ak=ak, policy=policy, location_key=location_key, track=given)
    if not again.consistent:
        raise BundleInvalid(
            f"re-verified differently: {again.mismatches[0]}", file=full.path,
            check="re-verification",
        )  # fmt: skip
    for what in again.not_checked:
        if what.startswith("location track checks"):  # the count differs per record
            what = TRACK_NOT_CHECKED
        checks.skip(what)
    checks.records_verified += 1
    return True, _fix(record, policy, location_key)


def _fix(
    record: EvidenceRecord, policy: AttestationPolicy, key: tpm.TpmPublic | None
) -> Fix | None:
    evidence = record.evidence
    location = policy.location
    if evidence is None or evidence.location is None or location is None or key is None:
        return None
    zones = ", ".join(location.zone_ids)
    try:
        signature = tpm.parse_tpmt_signature(evidence.location_signature or b"")
        tpm.verify_signature(key, evidence.location, signature)
        ev = decode_evidence(evidence.location)
    except (QuoteSignatureInvalid, TpmFormatError, ValueError):
        return Fix(latitude=0.0, longitude=0.0, accuracy_m=0.0, decision="unverified",
                   zone_id=zones)  # fmt: skip
    accuracy = ev.horizontal_accuracy_m
    decision, zone = "uncertain", zones
    if accuracy is not None:
        verdicts = [
            location.zones.decide(z, ev.latitude, ev.longitude, accuracy) for z in location.zone_ids
        ]
        inside = [v for v in verdicts if v.decision is ZoneDecision.INSIDE]
        if inside:
            decision, zone = "inside", inside[0].zone_id
        elif any(v.decision is ZoneDecision.UNCERTAIN for v in verdicts):
            decision = "uncertain"
        else:
            decision = "outside"
    judged = record.checks and any(
        c.check is Check.LOCATION and c.verdict in (Verdict.PASSED, Verdict.FAILED)
        for c in record.checks
    )
    return Fix(
        latitude=ev.latitude,
        longitude=ev.longitude,
        accuracy_m=accuracy or 0.0,
        decision=decision if judged else NOT_JUDGED,
        zone_id=zone,
    )


def _link(full: FullRecord, fix: Fix | None, logged: bool, reverified: bool) -> Link:
    record = full.record
    return Link(
        agent_id=record.agent_id,
        kind=LinkKind(record.kind.value),
        first_seq=record.seq,
        last_seq=record.seq,
        started_at=record.started_at,
        ended_at=record.ended_at,
        outcome=record.outcome.value if record.outcome else None,
        reason=record.reason.value if record.reason else None,
        from_state=record.from_state.value,
        to_state=record.to_state.value,
        fix=fix,
        message=record.message,
        logged=logged,
        reverified=reverified,
    )
