"""The verifier's hot state in Redis: the round schedule, per-agent locks and round memory.

Rounds run every couple of seconds for thousands of agents, so what a round needs fast lives in
Redis: the schedule (a sorted set of agent ids by due time), a lock per agent (one writer at a
time, across workers) with its fencing token, each agent's ``RoundMemory`` (a cache) and the last
verifier fault seen for it. SQL is the truth for state, lease and evidence
(``verifier.storage.verdicts``); the state cached here only decides whether to poll.

The fencing token is a per-agent counter incremented by every lock taken. After a Redis restart
without persistence the counters start again below what SQL stored; a commit refused on its fence
then raises the counter (``raise_fence``), costing one round.

If Redis loses the memory, the next round of each agent replays its IMA log from entry 0 and takes
its TPM clock as new: slower, never weaker, because every round has a fresh nonce.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from allowlists.ima.replay import ImaState
from geoattest.pcr_banks import PcrBank
from tpm import ClockInfo
from verifier.core.round_types import RoundMemory
from verifier.core.states import AgentState
from verifier.storage.hot_state_scripts import (
    CLAIM_DUE_LUA,
    CONFIRM_LUA,
    FINISH_ROUND_LUA,
    LOCK_AND_LOAD_LUA,
    RAISE_FENCE_LUA,
    STORE_AND_UNLOCK_LUA,
    TAKE_LOCK_LUA,
    UNLOCK_LUA,
)
from verifier.storage.redis_target import RedisTarget

SCHEDULE_KEY = "geoattest:schedule"
CONFIG_VERSION_KEY = "geoattest:config-version"
REVOCATION_CHANNEL = "geoattest:revocations"
EVENTS_CHANNEL = "geoattest:events"


def _memory_key(agent_id: str) -> str:
    return f"geoattest:memory:{agent_id}"


def _lock_key(agent_id: str) -> str:
    return f"geoattest:lock:{agent_id}"


def _fence_key(agent_id: str) -> str:
    return f"geoattest:fence:{agent_id}"


def _fault_key(agent_id: str) -> str:
    return f"geoattest:fault:{agent_id}"


FAULT_TTL_SECONDS = 3600
WORKER_PREFIX = "geoattest:worker:"
WORKER_TTL_SECONDS = 15.0  # a fault nobody repeats stops naming causes after an hour


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveStatus:
    """An agent's live status: its state machine position and what the last round remembered."""

    state: AgentState
    memory: RoundMemory
    last_round_at: float | None = None
    unreachable_streak: int = 0


REDIS_SOCKET_TIMEOUT = 5.0  # a Redis that hangs fails a call in seconds, never blocks a round
REDIS_CONNECT_TIMEOUT = 2.0


def connect_redis(target: RedisTarget | str) -> redis.Redis:
    """The verifier's Redis client for ``target`` (a URL, or the primary Sentinel names):
    bounded socket and connect timeouts (a hung Redis raises ``redis.TimeoutError``), and a
    health check of idle connections, so the first call after a Redis restart or a failover
    reconnects instead of failing on a dead socket."""
    if isinstance(target, str):
        target = RedisTarget(url=target)
    return target.client(
        socket_timeout=REDIS_SOCKET_TIMEOUT,
        connect_timeout=REDIS_CONNECT_TIMEOUT,
        health_check_interval=10,
    )


class HotState:
    """Typed access to the verifier's Redis keys."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    # --- schedule ---------------------------------------------------------------------------

    def schedule(self, agent_id: str, due: float) -> None:
        self._redis.zadd(SCHEDULE_KEY, {agent_id: due})

    def schedule_missing(self, agent_ids: Iterable[str], due: float) -> int:
        """Add the agents the schedule lacks (never moving a scheduled one); returns how many.

        The schedule lives only in Redis: after a Redis restart this puts the fleet back."""
        mapping: dict[str, float] = dict.fromkeys(agent_ids, due)
        if not mapping:
            return 0
        added = self._redis.zadd(SCHEDULE_KEY, mapping, nx=True)
        return int(added) if added is not None else 0

    def unschedule(self, agent_id: str) -> None:
        self._redis.zrem(SCHEDULE_KEY, agent_id)

    def claim_due(self, now: float, until: float, limit: int) -> list[str]:
        """Atomically take up to ``limit`` agents due at ``now``, pushing them to ``until`` so no
        other dispatcher takes them again before their round reschedules them."""
        claimed: list[str] = self._redis.eval(CLAIM_DUE_LUA, 1, SCHEDULE_KEY, now, until, limit)
        return [agent.decode() if isinstance(agent, bytes) else agent for agent in claimed]

    def due_of(self, agent_id: str) -> float | None:
        """When the agent's next round is due (None: not scheduled)."""
        score = self._redis.zscore(SCHEDULE_KEY, agent_id)
        return None if score is None else float(score)

    def due_count(self, now: float) -> int:
        return int(self._redis.zcount(SCHEDULE_KEY, "-inf", now))

    def scheduled_count(self) -> int:
        return int(self._redis.zcard(SCHEDULE_KEY))

    # --- locks and fencing tokens ------------------------------------------------------------

    def take_lock(self, agent_id: str, token: str, ttl_seconds: float) -> int | None:
        """The agent's lock and a fresh fencing token, or ``None`` when someone holds it."""
        keys = (_lock_key(agent_id), _fence_key(agent_id))
        fence = self._redis.eval(TAKE_LOCK_LUA, len(keys), *keys, token, int(ttl_seconds * 1000))
        return int(fence) if fence else None

    def unlock(self, agent_id: str, token: str) -> None:
        self._redis.eval(UNLOCK_LUA, 1, _lock_key(agent_id), token)

    def confirm_lock(self, agent_id: str, token: str, ttl_seconds: float) -> bool:
        """Whether ``token`` still holds the lock; if so it is extended to ``ttl_seconds`` (a
        writer confirms just before it commits, so its lock outlives the commit)."""
        return bool(
            self._redis.eval(CONFIRM_LUA, 1, _lock_key(agent_id), token, int(ttl_seconds * 1000))
        )

    def raise_fence(self, agent_id: str, at_least: int) -> int:
        """Lift the fencing counter above ``at_least`` (SQL stored it; Redis forgot) and return
        a fresh token from it, for the lock holder's retry."""
        return int(self._redis.eval(RAISE_FENCE_LUA, 1, _fence_key(agent_id), at_least))

    # --- a round's two round trips ------------------------------------------------------------
    # A round used five sequential Redis calls (lock, load, store, schedule, unlock); under load
    # every one of them waits for the worker's GIL again, so they are scripted into two.

    def lock_and_load(
        self, agent_id: str, token: str, ttl_seconds: float, *, retry_from: float | None = None
    ) -> tuple[int | None, LiveStatus | None]:
        """``take_lock`` and ``load`` in one round trip: the fence (``None``: not locked) and the
        cached status (meaningless unless locked). With ``retry_from`` (now, on the schedule's
        clock), a lock held by another makes the agent due again when it expires, pulled
        earlier only: a running round reschedules the agent itself when it ends, and a lock
        left by a killed worker would otherwise keep it at its claim horizon."""
        keys = (_lock_key(agent_id), _fence_key(agent_id), _memory_key(agent_id), SCHEDULE_KEY)
        retry = "" if retry_from is None else repr(retry_from)
        fence, raw = self._redis.eval(LOCK_AND_LOAD_LUA, len(keys), *keys,
                                      token, int(ttl_seconds * 1000), retry, agent_id)  # fmt: skip
        if not fence:
            return None, None
        return int(fence), None if not raw else _decode_status(raw)

    def finish_round(
        self,
        agent_id: str,
        token: str,
        status: LiveStatus | None,
        due: float | None,
        *,
        clear_fault: bool = False,
    ) -> bool:
        """Atomically, and only while ``token`` still holds the agent's lock: store ``status``
        (unless ``None``), schedule the next round at ``due`` or unschedule the agent (``None``),
        forget the agent's last fault (``clear_fault``: the round passed) and release the lock.
        Returns False, writing nothing, for a round that outlived its lock (another round or an
        operator may have moved the agent since)."""
        keys = (_lock_key(agent_id), _memory_key(agent_id), SCHEDULE_KEY, _fault_key(agent_id))
        args = (
            token,
            "" if status is None else _encode_status(status),
            "" if due is None else repr(due),
            agent_id,
            "1" if clear_fault else "",
        )
        return bool(self._redis.eval(FINISH_ROUND_LUA, len(keys), *keys, *args))

    def store_and_unlock(self, agent_id: str, token: str, status: LiveStatus) -> bool:
        """Store ``status`` and release the lock, only while ``token`` holds it; the schedule is
        left as it is (an operator or the watchdog moved the agent, rounds go on)."""
        keys = (_lock_key(agent_id), _memory_key(agent_id))
        return bool(
            self._redis.eval(STORE_AND_UNLOCK_LUA, len(keys), *keys, token, _encode_status(status))
        )

    def holds_lock(self, agent_id: str, token: str) -> bool:
        raw = self._redis.get(_lock_key(agent_id))
        held = raw.decode() if isinstance(raw, bytes) else raw
        return bool(held == token)

    def wait_for_lock(
        self, agent_id: str, token: str, ttl_seconds: float, wait: float
    ) -> int | None:
        """Take the agent's lock (its fence), waiting up to ``wait`` seconds for a running round
        to end; ``None`` if it does not."""
        deadline = time.monotonic() + wait
        while (fence := self.take_lock(agent_id, token, ttl_seconds)) is None:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)
        return fence

    # --- verifier faults (the watchdog names them when a lease runs out) -----------------------

    def mark_fault(self, agent_id: str, reason: str, message: str) -> None:
        body = json.dumps({"reason": reason, "message": message[:500], "at": time.time()})
        self._redis.set(_fault_key(agent_id), body, ex=FAULT_TTL_SECONDS)

    def clear_fault(self, agent_id: str) -> None:
        self._redis.delete(_fault_key(agent_id))

    def faults(self, agent_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        """The last fault (reason, message) of each agent that has one."""
        ids = list(agent_ids)
        if not ids:
            return {}
        raws = self._redis.mget([_fault_key(agent_id) for agent_id in ids])
        found = {}
        for agent_id, raw in zip(ids, raws, strict=True):
            if raw:
                body = json.loads(raw)
                found[agent_id] = (str(body["reason"]), str(body["message"]))
        return found

    # --- live status ------------------------------------------------------------------------

    def load(self, agent_id: str) -> LiveStatus | None:
        raw = self._redis.get(_memory_key(agent_id))
        return None if raw is None else _decode_status(raw)

    def load_many(self, agent_ids: Iterable[str]) -> dict[str, LiveStatus]:
        ids = list(agent_ids)
        if not ids:
            return {}
        raws = self._redis.mget([_memory_key(agent_id) for agent_id in ids])
        return {
            agent_id: _decode_status(raw) for agent_id, raw in zip(ids, raws, strict=True) if raw
        }

    def store(self, agent_id: str, status: LiveStatus) -> None:
        self._redis.set(_memory_key(agent_id), _encode_status(status))

    def forget(self, agent_id: str) -> None:
        self._redis.delete(_memory_key(agent_id), _fault_key(agent_id))
        self.unschedule(agent_id)

    # --- workers seen (readiness, tests that kill one) -----------------------------------------

    def heartbeat(self, worker_id: str, ttl_seconds: float = WORKER_TTL_SECONDS) -> None:
        self._redis.set(
            f"{WORKER_PREFIX}{worker_id}", repr(time.time()), px=int(ttl_seconds * 1000)
        )

    def workers_seen(self) -> dict[str, float]:
        """Worker processes that ran rounds lately: id (``host:pid``) -> last seen."""
        keys = list(self._redis.scan_iter(match=f"{WORKER_PREFIX}*", count=1000))
        if not keys:
            return {}
        values = self._redis.mget(keys)
        return {
            (key.decode() if isinstance(key, bytes) else key)[len(WORKER_PREFIX) :]: float(value)
            for key, value in zip(keys, values, strict=True)
            if value is not None
        }

    # --- configuration changes and revocations ----------------------------------------------

    def bump_config_version(self) -> int:
        """Tell every worker that agents or policies changed: they reload at their next batch."""
        return int(self._redis.incr(CONFIG_VERSION_KEY))

    def config_version(self) -> int:
        return int(self._redis.get(CONFIG_VERSION_KEY) or 0)

    def publish_event(self, message: str, *, ends_trust: bool) -> None:
        """Every event on the events channel; those that end trust also on the revocations one."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.publish(EVENTS_CHANNEL, message)
        if ends_trust:
            pipe.publish(REVOCATION_CHANNEL, message)
        pipe.execute()


def _encode_status(status: LiveStatus) -> str:
    memory = status.memory
    body: dict[str, object] = {
        "state": status.state.value,
        "last_round_at": status.last_round_at,
        "unreachable_streak": status.unreachable_streak,
        "clock": None,
        "ima": None,
    }
    if memory.clock is not None:
        clock = memory.clock
        body["clock"] = [clock.clock, clock.reset_count, clock.restart_count, clock.safe]
    if memory.location_track:
        body["location_track"] = [base64.b64encode(item).decode() for item in memory.location_track]
    if memory.ima is not None:
        body["ima"] = {
            "entries": memory.ima.entries_verified,
            "pcr10": {bank: value.hex() for bank, value in memory.ima.pcr10.items()},
        }
    return json.dumps(body, separators=(",", ":"))


def _decode_status(raw: bytes | str) -> LiveStatus:
    body = json.loads(raw)
    clock = None
    if body["clock"] is not None:
        ticks, reset_count, restart_count, safe = body["clock"]
        clock = ClockInfo(
            clock=ticks, reset_count=reset_count, restart_count=restart_count, safe=bool(safe)
        )
    ima = None
    if body["ima"] is not None:
        ima = ImaState(
            entries_verified=body["ima"]["entries"],
            pcr10={
                PcrBank(bank): bytes.fromhex(value) for bank, value in body["ima"]["pcr10"].items()
            },
        )
    track = tuple(base64.b64decode(item) for item in body.get("location_track", ()))
    return LiveStatus(
        state=AgentState(body["state"]),
        memory=RoundMemory(clock=clock, ima=ima, location_track=track),
        last_round_at=body["last_round_at"],
        unreachable_streak=body["unreachable_streak"],
    )
