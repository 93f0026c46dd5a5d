"""What an evidence record holds (``verifier.core.record`` has its canonical bytes, its digest
and the chain): the round's evidence as received, the memory and policy it was judged against,
a verdict per check, the state transition."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from allowlists.ima.replay import ImaState
from geofence import GnssReceiver
from tpm import ClockInfo
from verifier.core.reasons import Reason
from verifier.core.round_types import CheckResult, RoundEvidence
from verifier.core.states import AgentState, Outcome


class RecordKind(StrEnum):
    ROUND = "round"  # a round of attestation: evidence and verdicts
    OPERATOR = "operator"  # pause, resume, re-admit, refresh by an operator
    WATCHDOG = "watchdog"  # the lease ran out with no verdict: stale


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyRef:
    name: str
    version: int
    sha256: bytes  # of the policy's canonical document


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordContext:
    """The memory a round was judged against, so that the record re-verifies on its own.

    The location track is not copied (it is the location evidence of the previous rounds, in
    their records): ``track_sha256`` is SHA-256 over the concatenated SHA-256 of each.
    ``receiver`` is the GNSS receiver the agent enrolled, which the round compared the evidence's
    with (JSON ``{"source", "identity"}``; absent when none was enrolled or location not checked).
    """

    clock: ClockInfo | None
    ima: ImaState | None
    track_sha256: bytes
    track_length: int
    receiver: GnssReceiver | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LocationSummary:
    """The zone decision of a round's authenticated fix, kept whether the location check passed
    or not (``inside``; ``outside`` / ``uncertain``; or the decision of an implausible fix)."""

    decision: str
    zone_id: str
    distance_m: float
    accuracy_m: float | None = None  # the fix's horizontal accuracy (None in older records)


@dataclass(frozen=True, slots=True, kw_only=True)
class EvidenceRecord:
    agent_id: str
    seq: int  # 1, 2, … per agent, no gaps
    kind: RecordKind
    round_id: str
    started_at: dt.datetime
    ended_at: dt.datetime
    prev: bytes  # digest of the agent's previous record (GENESIS for the first)
    verifier_id: str
    from_state: AgentState
    to_state: AgentState
    reason: Reason | None = None
    message: str = ""
    details: Mapping[str, str] = field(default_factory=dict)
    # --- rounds only ------------------------------------------------------------------------
    outcome: Outcome | None = None
    judged_at: dt.datetime | None = None  # the ``now`` the checks ran with
    policy: PolicyRef | None = None
    zones_sha256: bytes | None = None
    ak_name: bytes | None = None
    location_key_name: bytes | None = None
    evidence: RoundEvidence | None = None  # as received (``None``: the agent sent none)
    boot_log_sha256: bytes | None = None  # the boot log itself is not kept
    context: RecordContext | None = None
    checks: tuple[CheckResult, ...] = ()
    location: LocationSummary | None = None
