"""The verifier API's wire: policies, agents, events and evidence records."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    Field,
)

from geoattest.pcr_banks import PcrBank
from geoattest.wire._base import (
    AgentId,
    B64Bytes,
    _OperatorInput,
    _Wire,
)
from geoattest.wire.evidence import (
    BankName,
    HexDigest,
    PcrIndexText,
)

# --- verifier API ---------------------------------------------------------------------------------

POLICY_NAME_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
POLICY_NAME_RULE = "1-64 of [A-Za-z0-9._-]"  # for messages
PolicyName = Annotated[str, Field(pattern=POLICY_NAME_PATTERN)]
POLICY_NAME_SCHEMA = {"type": "string", "pattern": POLICY_NAME_PATTERN}


def is_policy_name(value: str) -> bool:
    """True when ``value`` matches ``POLICY_NAME_PATTERN`` exactly (no trailing newline)."""
    return re.fullmatch(POLICY_NAME_PATTERN[1:-1], value) is not None


class PolicyDocument(_OperatorInput):
    """An attestation policy as operators write it (``PUT /v1/policies/<name>``).

    ``runtime_policy`` is an IMA runtime policy in geoattest's JSON format (docs/ima-policy.md);
    it stays a JSON object here and is parsed into a typed policy at once by the verifier.
    """

    boot_pcrs: dict[BankName, dict[PcrIndexText, HexDigest]] = Field(default_factory=dict)
    ima_banks: list[BankName] = Field(default_factory=lambda: [PcrBank.SHA256])
    runtime_policy: dict[str, object] | None = None
    # Proof-of-Geofencing: ``{"zones": ["DEU", …], "thresholds": {…}}`` (docs/location-policy.md);
    # the zone ids name features of the verifier's zones file. None: location is not checked.
    location: dict[str, object] | None = None
    # Replay the node's TCG boot event log and require it to reproduce the quoted PCRs 0-7
    # (a consistency check on top of the golden ``boot_pcrs``; docs/api.md).
    boot_log: bool = False
    # The lease: seconds a passed round vouches for the agent (None: 2 x interval + deadline + 1).
    max_age_seconds: float | None = None


class PolicyView(_Wire):
    name: PolicyName
    version: int
    updated_at: datetime
    document: PolicyDocument


class PolicySummaryView(_Wire):
    """A stored policy without its document (a whole-system policy is tens of MB): what
    ``PUT /v1/policies/<name>`` answers and ``GET /v1/policies`` lists."""

    name: PolicyName
    version: int
    updated_at: datetime
    sha256: str  # hex SHA-256 of the stored RFC 8785 document
    size_bytes: int  # length of that document


class AddAgentRequest(_OperatorInput):
    policy: PolicyName
    mode: Literal["pull", "push"] = "pull"  # push: the agent posts its evidence (ADR 19)


class AgentStatusView(_Wire):
    """An agent as the verifier shows it. ``state`` is derived through the lease: ``attested``
    only while the last passed round is younger than ``lease_max_age_seconds``; the stored
    verdict is ``stored_state``."""

    agent_id: AgentId
    policy: PolicyName
    state: str
    stored_state: str
    reason: str | None
    message: str | None
    details: dict[str, str] = Field(default_factory=dict)  # e.g. offending IMA path and digest
    state_since: datetime
    last_round_at: datetime | None = None
    last_passed_at: datetime | None = None
    lease_expires_at: datetime | None = None
    lease_remaining_seconds: float = 0.0
    lease_max_age_seconds: float
    ima_entries_verified: int | None = None
    records: int = 0  # evidence records so far (the seq of the newest)
    mode: str = "pull"  # pull: the verifier fetches evidence; push: the agent posts it


class EventView(_Wire):
    """One transition; the same body as the revocation channel and the webhook."""

    type: str
    id: int
    agent_id: AgentId
    at: datetime
    from_state: str
    to_state: str
    reason: str | None
    message: str | None
    details: dict[str, str] = Field(default_factory=dict)  # e.g. offending IMA path and digest
    round_id: str | None = None
    record_seq: int | None = None


class RoundSummaryView(_Wire):
    """One evidence record in a page of ``GET /v1/agents/<id>/rounds``."""

    kind: str  # round | operator | watchdog
    seq: int
    round_id: str
    started_at: datetime
    ended_at: datetime
    outcome: str | None
    reason: str | None
    kept: bool  # kept in full for good (else folded after the hot window)
    digest: str
    prev: str
    size: int


class FoldView(_Wire):
    """Consecutive records folded past the hot window: the chain's two ends and the counts."""

    kind: str = "fold"
    first_seq: int
    last_seq: int
    count: int
    first_at: datetime
    last_at: datetime
    prev: str
    head: str
    outcomes: dict[str, int]


class RoundPage(_Wire):
    items: list[RoundSummaryView | FoldView]
    next_after_seq: int | None  # pass as ``after_seq`` for the next page; None: no more


class RoundRecordView(_Wire):
    """One stored record: its digest, its canonical bytes (base64) and their decoded JSON."""

    agent_id: AgentId
    seq: int
    round_id: str
    digest: str
    kept: bool
    canonical: B64Bytes
    record: dict[str, object]
