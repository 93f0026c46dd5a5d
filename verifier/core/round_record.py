"""Building the evidence record of a round (or of an operator or watchdog action), pure.

Everything an agent chose (messages built from its IMA paths, details) is bounded and made
printable here, once, before it is stored, logged as part of a record or shown by the API.
The commit fills in the chain position (``seq``, ``prev``) and the states.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace

from geoattest.untrusted import printable
from geofence import GnssReceiver
from tpm import TpmPublic
from verifier.core.policy import AttestationPolicy
from verifier.core.reasons import Reason
from verifier.core.record import GENESIS, track_digest
from verifier.core.record_types import (
    EvidenceRecord,
    LocationSummary,
    PolicyRef,
    RecordContext,
    RecordKind,
)
from verifier.core.round_types import RoundEvidence, RoundMemory, RoundResult
from verifier.core.states import AgentState

MAX_MESSAGE_CHARS = 1000
MAX_DETAIL_CHARS = 300
MAX_DETAILS = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordOrigin:
    """Who judged, by what: the parts of a record that are the verifier's, not the agent's."""

    verifier_id: str
    zones_sha256: bytes | None = None


def clean_message(message: str) -> str:
    return printable(message, MAX_MESSAGE_CHARS)


def clean_details(details: Mapping[str, str]) -> dict[str, str]:
    return {
        printable(key, 64): printable(value, MAX_DETAIL_CHARS)
        for key, value in list(details.items())[:MAX_DETAILS]
    }


def round_record(
    *,
    agent_id: str,
    round_id: str,
    started_at: dt.datetime,
    ended_at: dt.datetime,
    judged_at: dt.datetime | None,
    origin: RecordOrigin,
    policy: AttestationPolicy,
    ak: TpmPublic,
    location_key: TpmPublic | None,
    previous: RoundMemory,
    evidence: RoundEvidence | None,
    result: RoundResult,
    receiver: GnssReceiver | None = None,
) -> EvidenceRecord:
    """The draft record of a round; ``evidence`` is ``None`` when the agent gave none;
    ``receiver`` the enrolled GNSS receiver the round compared with (kept in its context)."""
    context = None
    stored_evidence = None
    boot_log_sha256 = None
    if evidence is not None:
        track = previous.location_track
        context = RecordContext(
            clock=previous.clock,
            ima=previous.ima_for(policy.ima_banks),
            track_sha256=track_digest(track),
            track_length=len(track),
            receiver=receiver if policy.location is not None else None,
        )
        if evidence.boot_log is not None:
            boot_log_sha256 = hashlib.sha256(evidence.boot_log).digest()
        stored_evidence = replace(evidence, boot_log=None, ima_lines=tuple(evidence.ima_lines))
    verdict = result.location
    return EvidenceRecord(
        agent_id=agent_id,
        seq=0,
        kind=RecordKind.ROUND,
        round_id=round_id,
        started_at=started_at,
        ended_at=ended_at,
        prev=GENESIS,
        verifier_id=origin.verifier_id,
        from_state=AgentState.REGISTERED,  # placeholders: the commit reads the stored state
        to_state=AgentState.REGISTERED,
        reason=result.reason,
        message=clean_message(result.message),
        details=clean_details(result.details),
        outcome=result.outcome,
        judged_at=judged_at if evidence is not None else None,
        policy=PolicyRef(name=policy.name, version=policy.version, sha256=policy.digest),
        zones_sha256=origin.zones_sha256 if policy.location is not None else None,
        ak_name=ak.name,
        location_key_name=location_key.name if location_key is not None else None,
        evidence=stored_evidence,
        boot_log_sha256=boot_log_sha256,
        context=context,
        checks=tuple(replace(c, message=clean_message(c.message)) for c in result.checks),
        location=(
            LocationSummary(
                decision=verdict.decision.value,
                zone_id=verdict.zone_id,
                distance_m=verdict.distance_m,
                accuracy_m=verdict.accuracy_m,
            )
            if verdict is not None
            else None
        ),
    )


def action_record(
    *,
    agent_id: str,
    round_id: str,
    at: dt.datetime,
    kind: RecordKind,
    origin: RecordOrigin,
    reason: Reason,
    message: str = "",
    details: Mapping[str, str] | None = None,
) -> EvidenceRecord:
    """The draft record of an operator action or a watchdog expiry (no evidence)."""
    return EvidenceRecord(
        agent_id=agent_id,
        seq=0,
        kind=kind,
        round_id=round_id,
        started_at=at,
        ended_at=at,
        prev=GENESIS,
        verifier_id=origin.verifier_id,
        from_state=AgentState.REGISTERED,
        to_state=AgentState.REGISTERED,
        reason=reason,
        message=clean_message(message),
        details=clean_details(details or {}),
    )
