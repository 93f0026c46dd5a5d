"""Where a node was, as the verifier judged it: the fix of an evidence record, for the map.

A position is taken only from a round whose location check ran on authenticated evidence: the
quote verified (so the check was not ``not_run``) and the location signature held. A fix whose
signature failed is what an attacker claims, and is never drawn as the node's position.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from geoattest.errors import GeoattestError
from geofence.evidence import decode_evidence
from verifier.core.reasons import Reason
from verifier.core.record_types import EvidenceRecord
from verifier.core.round_types import Check, Verdict

# The location evidence itself was not authenticated: its coordinates prove nothing.
_UNAUTHENTICATED = frozenset(
    {Reason.LOCATION_SIGNATURE_INVALID, Reason.LOCATION_NONCE_MISMATCH, Reason.LOCATION_MISSING}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodePosition:
    latitude: float
    longitude: float
    accuracy_m: float | None  # horizontal, 2-sigma; None when the receiver gave none
    # inside / outside / uncertain (a failed location check keeps its decision), or "unknown"
    # when no zone was decided (a record from before decisions of failed checks were kept)
    decision: str
    zone_id: str | None
    distance_m: float | None  # lower bound of the distance to that zone's border
    verdict: str  # of the round's location check: passed / failed
    reason: str | None  # why the check failed, or what a passed one noted (a changed receiver)
    fix_at: dt.datetime  # the fix's UTC time
    round_id: str
    seq: int


def position_of(record: EvidenceRecord) -> NodePosition | None:
    """The node's position in ``record``, or None (no location evidence, check not run, or the
    evidence not authenticated)."""
    check = next((c for c in record.checks if c.check is Check.LOCATION), None)
    evidence = record.evidence
    if check is None or evidence is None or evidence.location is None:
        return None
    if check.verdict not in (Verdict.PASSED, Verdict.FAILED) or check.reason in _UNAUTHENTICATED:
        return None
    try:
        fix = decode_evidence(evidence.location)
    except GeoattestError:
        return None
    summary = record.location
    return NodePosition(
        latitude=fix.latitude,
        longitude=fix.longitude,
        accuracy_m=fix.horizontal_accuracy_m,
        decision=summary.decision if summary is not None else "unknown",
        zone_id=summary.zone_id if summary is not None and summary.zone_id else None,
        distance_m=(
            summary.distance_m
            if summary is not None and math.isfinite(summary.distance_m)
            else None
        ),
        verdict=check.verdict.value,
        reason=check.reason.value if check.reason is not None else None,
        fix_at=fix.utc,
        round_id=record.round_id,
        seq=record.seq,
    )
