"""What an offline verification of a residency bundle found: typed, and the same every time for
the same bundle (no clock: verification reads no time but the bundle's own)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from verifier.core.checkpoint import Checkpoint
from verifier.export.layout import Manifest


class LinkKind(StrEnum):
    ROUND = "round"
    OPERATOR = "operator"
    WATCHDOG = "watchdog"
    FOLD = "fold"


@dataclass(frozen=True, slots=True, kw_only=True)
class Fix:
    latitude: float
    longitude: float
    accuracy_m: float
    decision: str  # inside | outside | uncertain | unverified (signature) | not judged
    zone_id: str  # the zone it is inside of (or the policy's zones, comma-separated)


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """One row of the per-round table: a full record, or a fold of many rounds."""

    agent_id: str
    kind: LinkKind
    first_seq: int
    last_seq: int
    started_at: dt.datetime
    ended_at: dt.datetime
    outcome: str | None  # a record's outcome; a fold's outcomes are in ``outcomes``
    reason: str | None
    from_state: str | None
    to_state: str | None
    outcomes: Mapping[str, int] = field(default_factory=dict)
    max_gap: dt.timedelta = dt.timedelta(0)  # folds: longest interval between two rounds
    fix: Fix | None = None
    message: str = ""
    logged: bool = False  # the log vouches for it (directly, or through the chain)
    reverified: bool = False  # its checks were run again and agreed

    @property
    def rounds(self) -> int:
        if self.kind is LinkKind.FOLD:
            return self.last_seq - self.first_seq + 1
        return 1 if self.kind is LinkKind.ROUND else 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Interval:
    start: dt.datetime
    end: dt.datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True, slots=True, kw_only=True)
class DaySummary:
    day: dt.date
    rounds: int
    passed: int
    failed: int  # integrity failures
    unreachable: int
    other: int  # reboots, verifier faults
    gap_seconds: float  # time of the day (inside the window) the node was not attested
    inside: int
    outside: int
    uncertain: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    ek_fingerprint: str
    ek_subject: str
    ek_issuer: str
    tpm_manufacturer: str | None
    tpm_model: str | None
    chain: tuple[str, ...]  # subjects, leaf's issuer first, up to the auditor's anchor
    ak_names: tuple[str, ...]
    location_key: str | None  # its TPM name, when the node has one


@dataclass(frozen=True, slots=True, kw_only=True)
class AtAnswer:
    """Where the node was and whether it was attested at one instant."""

    at: dt.datetime
    attested: bool
    state: str
    why: str  # the record (or fold) that decides it
    fix: Fix | None  # the nearest verified fix at or before ``at``
    fix_at: dt.datetime | None
    fix_seq: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentVerification:
    agent_id: str
    policy: str
    identity: Identity | None
    links: tuple[Link, ...]
    attested: tuple[Interval, ...]  # inside the window
    gaps: tuple[Interval, ...]  # inside the window, not attested
    unplaced_gap_seconds: float  # lease lapses inside folds (where exactly is not kept)
    days: tuple[DaySummary, ...]
    location_required: bool
    records_verified: int
    not_checked: tuple[str, ...]
    at: AtAnswer | None = None

    @property
    def failures(self) -> tuple[Link, ...]:
        return tuple(link for link in self.links if link.outcome == "integrity_failure")

    @property
    def decisions(self) -> dict[str, int]:
        totals = {"inside": 0, "outside": 0, "uncertain": 0}
        for day in self.days:
            totals["inside"] += day.inside
            totals["outside"] += day.outside
            totals["uncertain"] += day.uncertain
        return totals

    @property
    def clean(self) -> bool:
        """Attested (and inside its zones, when its policy checks location) all window long."""
        decisions = self.decisions
        return (
            not self.failures
            and not self.gaps
            and self.unplaced_gap_seconds == 0
            and decisions["outside"] == 0
            and decisions["uncertain"] == 0
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class BundleVerification:
    manifest: Manifest
    checkpoint: Checkpoint
    logged_by: Checkpoint | None  # the first checkpoint that held every proven entry
    agents: tuple[AgentVerification, ...]
    files: int
    not_checked: tuple[str, ...]

    @property
    def clean(self) -> bool:
        return all(agent.clean for agent in self.agents)

    @property
    def records_verified(self) -> int:
        return sum(agent.records_verified for agent in self.agents)
