"""The verifier's Redis state on a real redis-server: schedule claims, locks, round memory."""

from __future__ import annotations

import time

import pytest
import redis

from allowlists.ima.replay import ImaState
from geoattest.pcr_banks import PcrBank
from tpm import ClockInfo
from verifier.core.round_types import RoundMemory
from verifier.core.states import AgentState
from verifier.storage.hot_state import SCHEDULE_KEY, HotState, LiveStatus

pytestmark = pytest.mark.redis


def _hot(url: str) -> HotState:
    return HotState(redis.Redis.from_url(url))


def test_claim_due_takes_each_due_agent_once(redis_url: str) -> None:
    hot = _hot(redis_url)
    for n in range(10):
        hot.schedule(f"a{n}", due=100.0 + n)
    first = hot.claim_due(now=104.5, until=200.0, limit=100)
    assert first == [f"a{n}" for n in range(5)]
    assert hot.claim_due(now=104.5, until=200.0, limit=100) == []
    assert hot.claim_due(now=150.0, until=300.0, limit=3) == ["a5", "a6", "a7"]
    assert hot.due_count(199.0) == 2
    assert hot.scheduled_count() == 10


def test_lock_is_exclusive_and_only_its_owner_unlocks(redis_url: str) -> None:
    hot = _hot(redis_url)
    assert hot.take_lock("a", "owner", ttl_seconds=5)
    assert hot.take_lock("a", "other", ttl_seconds=5) is None
    hot.unlock("a", "other")
    assert hot.take_lock("a", "other", ttl_seconds=5) is None
    hot.unlock("a", "owner")
    assert hot.take_lock("a", "other", ttl_seconds=5)


def test_every_lock_taken_hands_out_a_larger_fence(redis_url: str) -> None:
    hot = _hot(redis_url)
    fences = []
    for n in range(3):
        fence, _ = hot.lock_and_load("a", f"round-{n}", ttl_seconds=5)
        assert fence is not None
        fences.append(fence)
        assert hot.finish_round("a", f"round-{n}", None, due=1.0)
    operator = hot.take_lock("a", "operator", ttl_seconds=5)
    assert operator is not None
    assert fences == sorted(set(fences))
    assert operator > fences[-1]
    assert hot.take_lock("b", "other-agent", ttl_seconds=5) == 1  # counters are per agent


def test_a_failed_lock_with_a_time_makes_the_agent_due_when_the_lock_expires(
    redis_url: str,
) -> None:
    """A scheduled round that finds the agent locked leaves it due at the lock's expiry, in the
    same step as the failed try (so a lock that lapses meanwhile cannot leave the agent at its
    claim horizon); earlier only, and never for an agent that is not scheduled."""
    hot = _hot(redis_url)
    client = redis.Redis.from_url(redis_url)
    assert hot.take_lock("a", "dead-worker", ttl_seconds=3)
    hot.schedule("a", due=1000.0)  # its claim horizon
    assert hot.lock_and_load("a", "round", ttl_seconds=5) == (None, None)
    assert client.zscore(SCHEDULE_KEY, "a") == 1000.0  # a plain try moves nothing
    assert hot.lock_and_load("a", "round", ttl_seconds=5, retry_from=100.0) == (None, None)
    due = client.zscore(SCHEDULE_KEY, "a")
    assert due is not None
    assert 102.9 <= due <= 103.0  # now + the lock's time left
    hot.schedule("a", due=101.0)  # due sooner already: not pushed later
    hot.lock_and_load("a", "round", ttl_seconds=5, retry_from=100.0)
    assert client.zscore(SCHEDULE_KEY, "a") == 101.0
    assert hot.take_lock("b", "dead-worker", ttl_seconds=3)
    hot.lock_and_load("b", "round", ttl_seconds=5, retry_from=100.0)
    assert client.zscore(SCHEDULE_KEY, "b") is None  # not scheduled: stays so


def test_raise_fence_lifts_a_counter_that_redis_forgot(redis_url: str) -> None:
    hot = _hot(redis_url)
    assert hot.take_lock("a", "t1", ttl_seconds=5) == 1
    assert hot.raise_fence("a", 500) == 501  # SQL stored 500 before Redis lost its data
    hot.unlock("a", "t1")
    assert hot.take_lock("a", "t2", ttl_seconds=5) == 502
    assert hot.raise_fence("a", 10) == 503  # never lowered


def test_confirm_lock_extends_only_the_holders_lock(redis_url: str) -> None:
    hot = _hot(redis_url)
    assert hot.take_lock("a", "round", ttl_seconds=0.2)
    assert hot.confirm_lock("a", "round", ttl_seconds=5)
    assert not hot.confirm_lock("a", "intruder", ttl_seconds=5)
    time.sleep(0.3)  # the extension holds past the first ttl
    assert hot.holds_lock("a", "round")


def test_faults_are_remembered_per_agent_and_cleared(redis_url: str) -> None:
    hot = _hot(redis_url)
    hot.mark_fault("a", "record_failed", "database locked")
    assert hot.faults(["a", "b"]) == {"a": ("record_failed", "database locked")}
    hot.clear_fault("a")
    assert hot.faults(["a"]) == {}


def test_live_status_round_trips(redis_url: str) -> None:
    hot = _hot(redis_url)
    status = LiveStatus(
        state=AgentState.ATTESTED,
        memory=RoundMemory(
            clock=ClockInfo(clock=123, reset_count=2, restart_count=0, safe=True),
            ima=ImaState(
                entries_verified=42,
                pcr10={PcrBank.SHA256: b"\x01" * 32, PcrBank.SHA1: b"\x02" * 20},
            ),
        ),
        last_round_at=1000.5,
        unreachable_streak=0,
    )
    hot.store("a", status)
    assert hot.load("a") == status
    assert hot.load_many(["a", "missing"]) == {"a": status}
    hot.forget("a")
    assert hot.load("a") is None


def test_config_version_moves(redis_url: str) -> None:
    hot = _hot(redis_url)
    before = hot.config_version()
    assert hot.bump_config_version() == before + 1
    assert hot.config_version() == before + 1


def test_schedule_missing_adds_only_absent_agents(redis_url: str) -> None:
    hot = _hot(redis_url)
    hot.schedule("kept", due=500.0)
    assert hot.schedule_missing(["kept", "lost-1", "lost-2"], due=100.0) == 2
    assert hot.claim_due(now=100.0, until=900.0, limit=10) == ["lost-1", "lost-2"]
    assert hot.claim_due(now=499.0, until=900.0, limit=10) == []
    assert hot.schedule_missing([], due=1.0) == 0


def test_a_round_that_lost_its_lock_writes_nothing(redis_url: str) -> None:
    hot = _hot(redis_url)
    failed = LiveStatus(state=AgentState.FAILED, memory=RoundMemory())
    attested = LiveStatus(state=AgentState.ATTESTED, memory=RoundMemory())
    hot.store("a", failed)
    assert hot.take_lock("a", "stalled-round", ttl_seconds=0.05)
    time.sleep(0.1)  # its lock expired; an operator (or a newer round) takes the agent
    assert not hot.confirm_lock("a", "stalled-round", ttl_seconds=5)
    assert hot.take_lock("a", "operator", ttl_seconds=5)
    assert not hot.finish_round("a", "stalled-round", attested, due=123.0)
    assert hot.load("a") == failed
    assert hot.scheduled_count() == 0
    assert hot.holds_lock("a", "operator")
    assert hot.finish_round("a", "operator", attested, due=123.0)
    assert hot.load("a") == attested
    assert hot.claim_due(now=200.0, until=300.0, limit=5) == ["a"]
    assert not hot.holds_lock("a", "operator")


def test_wait_for_lock_waits_for_the_running_round(redis_url: str) -> None:
    hot = _hot(redis_url)
    assert hot.take_lock("a", "round", ttl_seconds=0.2)
    assert hot.wait_for_lock("a", "operator", ttl_seconds=5, wait=0.05) is None
    assert hot.wait_for_lock("a", "operator", ttl_seconds=5, wait=2.0)
