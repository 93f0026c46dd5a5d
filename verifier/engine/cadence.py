"""When an agent's next round is due, and the timeouts a round runs under."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from verifier.core.states import Outcome


@dataclass(frozen=True, slots=True, kw_only=True)
class Cadence:
    interval: float  # seconds between rounds of a healthy agent
    lock_ttl: float  # a crashed worker's lock expires after this
    backoff_max: float  # longest wait between retries of an unreachable agent
    commit_timeout: float = 10.0  # longest a round waits for its verdict to commit
    sample_every: dt.timedelta = dt.timedelta(minutes=5)  # one round per agent kept in full

    def next_due(self, now: float, outcome: Outcome, unreachable_streak: int) -> float:
        if outcome is Outcome.REBOOTED:
            return now  # re-attest the new boot at once, from IMA entry 0
        if outcome is Outcome.UNREACHABLE:
            return now + min(self.interval * 2.0 ** min(unreachable_streak, 16), self.backoff_max)
        return now + self.interval
