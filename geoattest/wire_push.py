"""Push-mode messages between an agent and the verifier's push listener (ADR 19).

1. ``POST /v1/push/challenge`` ``PushChallengeRequest`` -> ``PushChallengeView``: the verifier
   picks the round's nonce (its challenge) and says what to quote, exactly as a pull round asks
   (``EvidenceRequest``).
2. ``POST /v1/push/evidence`` ``PushEvidencePost`` -> ``PushVerdictView``: the evidence answering
   that challenge, judged and recorded as any round.

Both calls come over mTLS with the agent's registered certificate. This module is a leaf: of
the project it imports only ``geoattest.wire``.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from geoattest.wire import AgentId, EvidenceRequest, EvidenceResponse

__all__ = ["PushChallengeRequest", "PushChallengeView", "PushEvidencePost", "PushVerdictView"]


class _PushWire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")  # peers tolerate version skew


class PushChallengeRequest(_PushWire):
    agent_id: AgentId


class PushChallengeView(_PushWire):
    """The round to run: ``request.nonce`` is the challenge, single use, until ``expires_at``."""

    request: EvidenceRequest
    expires_at: datetime


class PushEvidencePost(_PushWire):
    agent_id: AgentId
    nonce: str  # the challenge answered (``request.nonce`` of the challenge), hex
    evidence: EvidenceResponse


class PushVerdictView(_PushWire):
    """What the round concluded: the agent's state after it, and why when it did not pass."""

    agent_id: AgentId
    outcome: str
    state: str
    reason: str | None = None
    message: str | None = None
    record_seq: int | None = None
