"""A round's outcome in the metrics and the log."""

from __future__ import annotations

import logging

from verifier.core.reasons import Reason
from verifier.core.record_types import EvidenceRecord
from verifier.core.round_types import RoundResult
from verifier.core.states import Outcome
from verifier.metrics import ROUND_SECONDS, ROUNDS

log = logging.getLogger("verifier.engine.runner")  # the runner's lines, as before the move


def count_round(result: RoundResult, seconds: float, *, fault: Reason | None = None) -> None:
    """A round in the metrics: its verdict, or the verifier fault that kept it from being
    recorded (then the verdict did not count: nothing was committed)."""
    outcome = Outcome.VERIFIER_FAULT if fault is not None else result.outcome
    reason = fault or result.reason
    ROUNDS.labels(outcome.value, reason.value if reason is not None else "").inc()
    ROUND_SECONDS.labels(outcome.value).observe(max(seconds, 0.0))


def log_outcome(record: EvidenceRecord, result: RoundResult) -> None:
    """One info line when a round changes the agent's state; every other round at debug (a
    fleet at rest writes nothing at info)."""
    why = result.reason.value if result.reason is not None else result.outcome.value
    if record.from_state is not record.to_state:
        log.info("agent %s: %s -> %s (%s)", record.agent_id, record.from_state.value,
                 record.to_state.value, why)  # fmt: skip
    else:
        log.debug("agent %s: %s (%s)", record.agent_id, record.to_state.value, why)
