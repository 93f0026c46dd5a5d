"""What verifying one agent of a residency bundle collects, shared by its steps
(``verify_agent`` and the modules it calls)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

from verifier.core.reasons import Reason
from verifier.core.record_types import EvidenceRecord
from verifier.export.results import Identity, Link

MEMORY_RESETS = frozenset({Reason.OPERATOR_READMITTED, Reason.AK_CHANGED})
TRACK_NOT_CHECKED = (
    "location track checks (teleport, frozen fix, clock jump, vertical speed) of records whose "
    "previous rounds were folded: their fixes are not kept"
)
NOT_JUDGED = "not judged"  # a fix of a round whose location check did not run (e.g. a reboot)


@dataclass(slots=True)
class AgentChecks:
    """What one agent's verification collects on the way."""

    links: list[Link] = field(default_factory=list)
    not_checked: Counter[str] = field(default_factory=Counter)
    identity: Identity | None = None
    records_verified: int = 0
    location_required: bool = False
    max_age: dt.timedelta | None = None  # the lease of the policy of the last round

    def skip(self, what: str) -> None:
        self.not_checked[what] += 1


@dataclass(frozen=True, slots=True, kw_only=True)
class FullRecord:
    """A record file of the bundle: its path, its canonical bytes, decoded, and its digest."""

    path: str
    canonical: bytes
    record: EvidenceRecord
    digest: bytes
