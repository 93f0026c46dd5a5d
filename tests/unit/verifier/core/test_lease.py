"""The lease: ``attested`` only while the last passed round is younger than ``max_age``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from verifier.core.lease import default_max_age, derive_lease
from verifier.core.states import AgentState

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
MAX_AGE = timedelta(seconds=10)


def test_a_recent_pass_vouches_until_it_is_max_age_old() -> None:
    lease = derive_lease(
        stored=AgentState.ATTESTED,
        last_passed_at=NOW - timedelta(seconds=4),
        max_age=MAX_AGE,
        now=NOW,
    )
    assert lease.state is AgentState.ATTESTED
    assert lease.expires_at == NOW + timedelta(seconds=6)
    assert lease.remaining(NOW) == pytest.approx(6.0)


def test_attested_without_a_recent_pass_is_stale() -> None:
    """Whatever stopped the rounds (crash, hang, unusable policy), the claim ends by itself."""
    old = derive_lease(
        stored=AgentState.ATTESTED,
        last_passed_at=NOW - timedelta(seconds=11),
        max_age=MAX_AGE,
        now=NOW,
    )
    assert old.state is AgentState.STALE
    assert old.stored_state is AgentState.ATTESTED
    assert old.remaining(NOW) == 0.0
    never = derive_lease(stored=AgentState.ATTESTED, last_passed_at=None, max_age=MAX_AGE, now=NOW)
    assert never.state is AgentState.STALE


@pytest.mark.parametrize("stored", [s for s in AgentState if s is not AgentState.ATTESTED])
def test_no_other_state_vouches(stored: AgentState) -> None:
    lease = derive_lease(stored=stored, last_passed_at=NOW, max_age=MAX_AGE, now=NOW)
    assert lease.state is stored
    assert not lease.attested
    assert lease.remaining(NOW) == 0.0


def test_default_max_age_lets_one_round_be_missed_and_no_more() -> None:
    assert default_max_age(interval=2.0, round_deadline=5.0) == timedelta(seconds=10)
