"""The location check of a round: signed evidence → verified fix → plausibility → zone decision.

``check_location`` is pure (no I/O, no clock) and runs the design's trust rule 6 in order:

1. the TPMT_SIGNATURE over the evidence bytes verifies with the agent's registered location key
   (which the registrar accepted only as a fixedTPM key certified by the AK); the bytes are then
   decoded, canonical form only (``location_signature_invalid``);
2. the evidence answers this round's nonce (``location_nonce_mismatch``: replayed evidence);
   the receiver it names is compared with the enrolled one (``verifier.core.receiver``: under
   ``receiver = "require"`` a different one is ``gnss_receiver_changed``);
3. the fix comes from a source kind the policy accepts (``location_implausible``, reason
   ``location_source``: by default a replayed ``file`` is refused);
4. the fix is fresh (``location_stale``) and plausible against the recent ``track``
   (``location_implausible`` with the check's own reason, e.g. ``location_teleport``);
5. the zone decision is ``inside`` one of the policy's zones; ``uncertain`` never counts as
   inside (``location_outside_zone``).

The quote's binding of the same evidence bytes (``quote_qualifying_data``) is checked by the
round's quote verification, not here.

Evidence v3 carries the per-satellite C/N0, the RMC status, the vertical accuracy and the source
kind, so ``check_fix`` runs the C/N0-uniformity spoofing check (``location_cn0_uniform``), the
whole fix-quality check and both altitude checks (``location_altitude``: the range, and the
vertical speed against the previous signed fix, e.g. a cold-start fix 200 m below the one 9 s
before) here, on the verifier, not only on the agent that vouches for itself (the agent still
screens C/N0 before it signs: defence in depth). Evidence v1 and v2 (agents from before those
changes) are refused as a round's evidence (``location_signature_invalid``), as v1 was refused
once v2 existed: they lack what the checks need, and skipping a check for them would let an
attacker opt out of it by sending an old version. Old evidence remembered on the track from
earlier rounds still decodes (``fix_from_evidence``): it was checked when it was current; a track
fix without vertical accuracy just does not take part in the vertical-speed check.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from geoattest.errors import (
    IntegrityError,
    LocationEvidenceInvalid,
    LocationImplausible,
    LocationMissing,
    LocationNonceMismatch,
    LocationOutsideZone,
    NotFound,
    PolicyInvalid,
    QuoteSignatureInvalid,
    TpmFormatError,
)
from geofence import (
    AccuracySource,
    Fix,
    GnssReceiver,
    LocationEvidence,
    LocationPolicy,
    LocationReason,
    ReceiverIdentity,
    SatelliteSignal,
    ZoneDecision,
    ZoneSet,
    ZoneVerdict,
    check_fix,
    decode_evidence,
    policy_from_mapping,
)
from geofence.evidence import EVIDENCE_VERSION
from geofence.nearby import DecidedAt
from tpm import TpmPublic, parse_tpmt_signature, verify_signature
from verifier.core.receiver import ReceiverFinding, ReceiverRule, check_receiver, receiver_rule

__all__ = [
    "LocationJudgement",
    "LocationRoundPolicy",
    "LocationVerdict",
    "check_location",
    "fix_from_evidence",
    "judge_location",
    "location_policy_from_mapping",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class LocationRoundPolicy:
    """Plausibility thresholds, the zones, and the zone ids a fix must be inside one of (PoG)."""

    thresholds: LocationPolicy
    zones: ZoneSet
    zone_ids: tuple[str, ...]
    # Whether PoG tokens carry the fix's coordinates (RFC 9711 ``location``) or only the zone.
    disclose_coordinates: bool = True
    # What a receiver other than the enrolled one does (``verifier.core.receiver``).
    receiver: ReceiverRule = ReceiverRule.RECORD

    def __post_init__(self) -> None:
        if not self.zone_ids:
            raise PolicyInvalid("location policy names no zone")
        for zone_id in self.zone_ids:
            try:
                self.zones.zone(zone_id)
            except NotFound as e:
                raise PolicyInvalid(f"location policy: {e.message}") from e


@dataclass(frozen=True, slots=True, kw_only=True)
class LocationVerdict:
    """The zone decision of an authenticated fix: the fix (a passed check appends it to the
    track), the decision, the zone it is about (the one it is inside; else one it is uncertain
    for; else the nearest) and a lower bound of the fix's distance to that zone's border."""

    fix: Fix
    decision: ZoneDecision
    zone_id: str
    distance_m: float
    receiver: GnssReceiver | None = None  # the receiver the signed evidence names
    receiver_finding: ReceiverFinding | None = None  # not the enrolled one, under ``record``

    @property
    def accuracy_m(self) -> float | None:
        return self.fix.horizontal_accuracy_m


@dataclass(frozen=True, slots=True, kw_only=True)
class LocationJudgement:
    """What ``judge_location`` found: the zone decision of the authenticated fix (``None``: it
    has no horizontal accuracy to decide with), and the failure, if any (``None``: passed)."""

    verdict: LocationVerdict | None
    failure: IntegrityError | None
    # The full zone decisions to start the receiver's next fix from (``geofence.nearby``).
    near: Mapping[str, DecidedAt] = field(default_factory=dict)


def location_policy_from_mapping(data: Mapping[str, object], zones: ZoneSet) -> LocationRoundPolicy:
    """``{"zones": ["DEU", ...], "thresholds": {...LocationPolicy fields},
    "coordinates_in_tokens": true, "receiver": "record"}`` → policy (``coordinates_in_tokens``
    false: PoG tokens name the zone and the decision, not the position; ``receiver``
    ``"require"``: only the enrolled GNSS receiver passes).

    Raises PolicyInvalid for unknown keys, a missing or empty zone list, unknown zone ids or bad
    thresholds.
    """
    unknown = set(data) - {"zones", "thresholds", "coordinates_in_tokens", "receiver"}
    if unknown:
        raise PolicyInvalid(f"location policy: unknown keys {sorted(unknown)}")
    zone_ids = data.get("zones")
    if not isinstance(zone_ids, list) or not all(isinstance(z, str) for z in zone_ids):
        raise PolicyInvalid("location policy: zones must be a list of zone ids")
    thresholds = data.get("thresholds", {})
    if not isinstance(thresholds, Mapping):
        raise PolicyInvalid("location policy: thresholds must be a table")
    disclose = data.get("coordinates_in_tokens", True)
    if not isinstance(disclose, bool):
        raise PolicyInvalid("location policy: coordinates_in_tokens must be true or false")
    return LocationRoundPolicy(
        thresholds=policy_from_mapping(thresholds),
        zones=zones,
        zone_ids=tuple(zone_ids),
        disclose_coordinates=disclose,
        receiver=receiver_rule(data.get("receiver", ReceiverRule.RECORD.value)),
    )


def fix_from_evidence(ev: LocationEvidence) -> Fix:
    """The fix as far as the signed evidence states it: one signal per satellite with its C/N0
    (none before v2), no elevation/azimuth, the vertical accuracy (none before v3)."""
    receiver = ReceiverIdentity(texts=tuple(ev.receiver.split(" | "))) if ev.receiver else None
    signals = []
    for sat, cn0 in ev.cn0_dbhz:
        constellation, _, prn = sat.rpartition(":")
        signals.append(
            SatelliteSignal(
                constellation=constellation,
                prn=int(prn),
                signal_id=None,
                elevation_deg=None,
                azimuth_deg=None,
                cn0_dbhz=float(cn0),
            )
        )
    return Fix(
        utc=ev.utc,
        time_of_day=ev.utc.time(),
        latitude=ev.latitude,
        longitude=ev.longitude,
        altitude_m=ev.altitude_m,
        quality=ev.quality,
        rmc_status=ev.rmc_status,
        rmc_mode=ev.rmc_mode,
        gns_mode=ev.gns_mode,
        fix_type=None,
        satellites_used=ev.satellites_used,
        satellites_in_view=None,
        hdop=ev.hdop,
        pdop=None,
        vdop=None,
        horizontal_accuracy_m=ev.horizontal_accuracy_m,
        accuracy_source=AccuracySource(ev.accuracy_source),
        vertical_accuracy_m=ev.vertical_accuracy_m,
        speed_mps=ev.speed_mps,
        course_deg=ev.course_deg,
        signals=tuple(signals),
        receiver=receiver,
        nmea_digest=ev.nmea_digest,
        sentence_count=0,
    )


def _verified_evidence(evidence: bytes, signature: bytes, key: TpmPublic) -> LocationEvidence:
    try:
        verify_signature(key, evidence, parse_tpmt_signature(signature))
    except (QuoteSignatureInvalid, TpmFormatError) as e:
        raise LocationEvidenceInvalid(
            f"location evidence is not signed by the agent's location key: {e.message}"
        ) from e
    try:
        ev = decode_evidence(evidence)
        AccuracySource(ev.accuracy_source)
    except ValueError as e:
        raise LocationEvidenceInvalid(f"location evidence malformed: {e}") from e
    if ev.version != EVIDENCE_VERSION:
        lacks = "source kind or vertical accuracy" if ev.version == 2 else "per-satellite C/N0"
        raise LocationEvidenceInvalid(
            f"location evidence v{ev.version} is refused: it carries no {lacks}, so the "
            f"verifier cannot run all its checks (the agent must send v{EVIDENCE_VERSION})"
        )
    return ev


def _check_source(ev: LocationEvidence, policy: LocationPolicy) -> None:
    if ev.source not in policy.accepted_sources:
        raise LocationImplausible(
            f"{LocationReason.SOURCE}: fix read from a {ev.source} source; the policy accepts "
            f"{', '.join(sorted(policy.accepted_sources))} (a file is a replay, not a receiver)",
            reason=LocationReason.SOURCE.value,
        )


def _zone_verdict(
    fix: Fix, policy: LocationRoundPolicy, near: Mapping[str, DecidedAt]
) -> tuple[ZoneVerdict | None, Mapping[str, DecidedAt]]:
    """The decision for the policy's zones: the zone it is inside (farthest from the border),
    else one it is uncertain for, else the nearest; ``None`` when the fix has no accuracy.
    ``near``: this receiver's previous full decisions by zone (``geofence.nearby``), returned
    updated; they change no decision, only how much polygon work it takes."""
    accuracy = fix.horizontal_accuracy_m
    if accuracy is None:
        return None, {}
    verdicts = []
    decided: dict[str, DecidedAt] = {}
    for zone_id in policy.zone_ids:
        verdict, hint = policy.zones.decide_near(
            zone_id, fix.latitude, fix.longitude, accuracy, near.get(zone_id)
        )
        verdicts.append(verdict)
        if hint is not None:
            decided[zone_id] = hint
    inside = [v for v in verdicts if v.decision is ZoneDecision.INSIDE]
    if inside:
        return max(inside, key=lambda v: v.distance_to_border_m), decided
    uncertain = [v for v in verdicts if v.decision is ZoneDecision.UNCERTAIN]
    return min(uncertain or verdicts, key=lambda v: v.distance_to_border_m), decided


def _require_inside(fix: Fix, verdict: LocationVerdict | None, policy: LocationRoundPolicy) -> None:
    if verdict is None:  # plausibility refuses this first; kept so the decision never guesses
        raise LocationOutsideZone("fix has no horizontal accuracy: zone decision is uncertain")
    if verdict.decision is ZoneDecision.INSIDE:
        return
    where = f"({fix.latitude:.6f}, {fix.longitude:.6f}) ± {verdict.accuracy_m:.1f} m"
    if verdict.decision is ZoneDecision.UNCERTAIN:
        raise LocationOutsideZone(
            f"fix {where} is uncertain for zone {verdict.zone_id}: the accuracy disc crosses "
            "the border, and uncertain is never inside"
        )
    raise LocationOutsideZone(f"fix {where} is outside zone(s) {', '.join(policy.zone_ids)}")


def judge_location(
    *,
    evidence: bytes | None,
    signature: bytes | None,
    location_key: TpmPublic,
    nonce: bytes,
    policy: LocationRoundPolicy,
    track: Sequence[Fix],
    now: dt.datetime,
    enrolled_receiver: GnssReceiver | None = None,
    previous_receiver: GnssReceiver | None = None,
    near: Mapping[str, DecidedAt] | None = None,
) -> LocationJudgement:
    """Check one round's location evidence (see the module docstring for the order), keeping
    the zone decision of the fix once it is authenticated, whether the check passes or not
    (the record and the map show where a failed or uncertain node said it was).

    ``enrolled_receiver`` is the agent's enrolled GNSS receiver (None: it enrolled none),
    ``previous_receiver`` the last passed round's; ``near`` the receiver's previous full zone
    decisions (``LocationJudgement.near``; None: decide in full). Raises, with no decision
    kept, what leaves the fix unauthenticated: LocationMissing, LocationEvidenceInvalid,
    LocationNonceMismatch.
    Every later failure (GnssReceiverChanged / GnssReceiverUnidentified under ``receiver =
    "require"``, LocationStale, LocationImplausible, LocationOutsideZone) is returned as
    ``failure``.
    """
    if evidence is None or signature is None:
        raise LocationMissing("the policy requires signed location evidence; the agent sent none")
    ev = _verified_evidence(evidence, signature, location_key)
    if not hmac.compare_digest(ev.nonce, nonce):
        raise LocationNonceMismatch(
            f"location evidence answers nonce {ev.nonce.hex()[:16]}…, not this round's "
            f"{nonce.hex()[:16]}…: replayed"
        )
    receiver = GnssReceiver.from_evidence(ev)  # v3: it names its source kind
    fix = fix_from_evidence(ev)
    decided, hints = _zone_verdict(fix, policy, near or {})
    verdict = (
        None
        if decided is None
        else LocationVerdict(
            fix=fix,
            decision=decided.decision,
            zone_id=decided.zone_id,
            distance_m=decided.distance_to_border_m,
            receiver=receiver,
        )
    )
    try:
        finding = check_receiver(
            seen=receiver,
            enrolled=enrolled_receiver,
            previous=previous_receiver,
            rule=policy.receiver,
        )
        _check_source(ev, policy.thresholds)
        check_fix(fix, track, policy.thresholds, now).raise_for_failure()
        _require_inside(fix, verdict, policy)
    except IntegrityError as e:
        return LocationJudgement(verdict=verdict, failure=e, near=hints)
    assert verdict is not None  # noqa: S101  # _require_inside passed on it
    return LocationJudgement(
        verdict=replace(verdict, receiver_finding=finding), failure=None, near=hints
    )


def check_location(
    *,
    evidence: bytes | None,
    signature: bytes | None,
    location_key: TpmPublic,
    nonce: bytes,
    policy: LocationRoundPolicy,
    track: Sequence[Fix],
    now: dt.datetime,
    enrolled_receiver: GnssReceiver | None = None,
    previous_receiver: GnssReceiver | None = None,
) -> LocationVerdict:
    """Check one round's location evidence (see the module docstring for the order).

    ``track`` holds the fixes of earlier passed rounds, oldest first (``LocationVerdict.fix``);
    ``now`` is the verifier's aware UTC time; ``enrolled_receiver`` and ``previous_receiver``
    as for ``judge_location``. Returns the ``inside`` verdict. Raises LocationMissing,
    LocationEvidenceInvalid, LocationNonceMismatch, GnssReceiverChanged /
    GnssReceiverUnidentified (policy ``receiver = "require"``), LocationStale,
    LocationImplausible (``reason`` = the check's code, or ``location_source``) or
    LocationOutsideZone; all are IntegrityErrors.
    """
    judged = judge_location(
        evidence=evidence, signature=signature, location_key=location_key, nonce=nonce,
        policy=policy, track=track, now=now, enrolled_receiver=enrolled_receiver,
        previous_receiver=previous_receiver,
    )  # fmt: skip
    if judged.failure is not None:
        raise judged.failure
    assert judged.verdict is not None  # noqa: S101  # _require_inside passed on it
    return judged.verdict
