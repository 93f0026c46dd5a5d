"""Attestation as a lease: ``attested`` holds only while the last passed round is recent.

The stored state says what the last verdict was; the lease says whether that verdict still
vouches for the agent *now*. An agent stored ``attested`` whose last passed round ended more than
``max_age`` ago (or never) is ``stale``: a verifier that stops judging an agent, for any reason
(crash, hang, unusable policy, lost lock, database down), stops vouching for it without any code
path having to say so. Every reader (API, tokens, dashboard, CLI, exports) goes through
``derive_lease``; the watchdog then records the expiry as a transition.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from verifier.core.states import AgentState

# A round may take up to its fetch deadline, plus dispatch and recording; the default max age lets
# one round be missed entirely and the next be late, and no more.
ROUND_OVERHEAD_SECONDS = 1.0


def default_max_age(*, interval: float, round_deadline: float) -> dt.timedelta:
    """The default lease: two intervals plus one round's deadline (and a second of overhead)."""
    return dt.timedelta(seconds=2 * interval + round_deadline + ROUND_OVERHEAD_SECONDS)


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    """An agent's state at one instant, as every reader must present it."""

    state: AgentState  # the effective state now
    stored_state: AgentState  # the last recorded verdict or operator action
    last_passed_at: dt.datetime | None
    expires_at: dt.datetime | None  # when ``attested`` ends unless a round passes; else None

    @property
    def attested(self) -> bool:
        return self.state is AgentState.ATTESTED

    def remaining(self, now: dt.datetime) -> float:
        """Seconds of lease left (0 when not attested)."""
        if self.expires_at is None or not self.attested:
            return 0.0
        return max(0.0, (self.expires_at - now).total_seconds())


def derive_lease(
    *,
    stored: AgentState,
    last_passed_at: dt.datetime | None,
    max_age: dt.timedelta,
    now: dt.datetime,
) -> Lease:
    """The lease of an agent at ``now`` (aware UTC datetimes).

    ``attested`` survives only if ``last_passed_at`` is no older than ``max_age``; otherwise the
    agent is ``stale``. Other stored states are shown as they are (none of them vouches).
    """
    if stored is not AgentState.ATTESTED:
        return Lease(
            state=stored, stored_state=stored, last_passed_at=last_passed_at, expires_at=None
        )
    if last_passed_at is None:
        return Lease(
            state=AgentState.STALE, stored_state=stored, last_passed_at=None, expires_at=None
        )
    expires_at = last_passed_at + max_age
    state = AgentState.ATTESTED if now <= expires_at else AgentState.STALE
    return Lease(
        state=state, stored_state=stored, last_passed_at=last_passed_at, expires_at=expires_at
    )
