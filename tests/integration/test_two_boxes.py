"""Two verifier boxes on one Redis and one PostgreSQL share a fleet, and one of them dies.

Each box is a Celery worker and its own beat (``geoattest verifier worker|beat`` processes with
their own ``verifier_id``), as ADR 20 deploys them; simulated agents answer over mTLS. Box A's
worker, its pool and its beat are SIGKILLed while rounds are in flight (their round locks held,
their agents claimed). Then, within the lease:

- every agent keeps being judged: no gap between two passed rounds of an agent exceeds the lease
  (so nobody reads ``stale``, the watchdog records nothing), and every agent has a passed round
  judged by box B after the kill, those killed mid-round included;
- no agent is judged twice at once: an agent's records never overlap in time, and their chain
  is intact (consecutive seqs, each naming the digest of the one before);
- no false failure: no event to ``failed``, no webhook.

The takeover (``takeover_seconds``, the round lock's and the dispatch claim's lifetime) is what
makes this hold: with the lock and claim lifetimes the verifier had before (2 x agent timeout +
5 s, and the lease), the agents killed mid-round read ``stale`` before box B may take them.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import os
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from tests.support.fault_figures import record_figures
from tests.support.fault_stack import FaultStack, fault_stack
from tests.support.postgres_server import PostgresServer
from tests.support.service_process import ServiceProcess, verifier_celery
from tests.support.verifier_stack import settings_environment
from verifier.core.record import decode_record

pytestmark = [pytest.mark.postgresql, pytest.mark.redis, pytest.mark.slow]

AGENTS = 8
INTERVAL = 2.0  # the default; a shorter one leaves the takeover little room on a loaded box
AGENT_TIMEOUT = 1.0
LEASE = 2 * INTERVAL + AGENT_TIMEOUT + 1.0  # the default lease (verifier.core.lease)
HELD = 0.7  # answers held this long at the kill: rounds in flight, within the fetch deadline
LOCK_PREFIX = "geoattest:lock:"
IN_FLIGHT = AGENTS // 2  # rounds in flight at the kill (some of them box A's)
KILL_ATTEMPTS = 5  # kills until one orphans a round of box A's (restarted between them)


@dataclass
class Boxes:
    stack: FaultStack  # box A: the stack's own worker and beat
    worker_b: ServiceProcess
    beat_b: ServiceProcess
    redis: redis.Redis


@pytest.fixture(scope="module")
def boxes(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer
) -> Iterator[Boxes]:
    work = tmp_path_factory.mktemp("two-boxes")
    with ExitStack() as stack:
        url = stack.enter_context(postgres_server.database())
        registrar_url = stack.enter_context(postgres_server.database())
        running = stack.enter_context(
            fault_stack(
                work, database="postgresql", database_url=url,
                registrar_database_url=registrar_url, agents=AGENTS,
                extra_settings={
                    "round_interval_seconds": INTERVAL, "agent_timeout_seconds": AGENT_TIMEOUT,
                    "verifier_id": "box-a",
                },
            )
        )  # fmt: skip
        # Box B: the same settings but its name, and its own directory for beat's schedule file
        # (on another host it would be another disk; the client certificate is the same).
        box_b = work / "box-b"
        shutil.copytree(running.verifier.settings.verifier_tls_dir, box_b / "tls")
        env = settings_environment(running.verifier.settings) | {
            "GEOATTEST_VERIFIER_ID": "box-b",
            "GEOATTEST_VERIFIER_TLS_DIR": str(box_b / "tls"),
        }
        worker_b = verifier_celery("worker-b", ["worker", "--concurrency", "2"], env, work)
        beat_b = verifier_celery("beat-b", ["beat"], env, work)
        for process in (worker_b, beat_b):
            process.start()
            stack.callback(process.stop)
        client = redis.Redis.from_url(running.redis.url)
        stack.callback(client.close)
        yield Boxes(stack=running, worker_b=worker_b, beat_b=beat_b, redis=client)


def test_killing_one_box_moves_its_agents_to_the_other_within_the_lease(boxes: Boxes) -> None:
    stack = boxes.stack
    started = dt.datetime.now(dt.UTC)
    settled, killed_at, orphaned = _kill_box_a_with_rounds_in_flight(boxes, started)
    time.sleep(LEASE + 2 * INTERVAL)  # every orphan's lease would have run out by now
    ended = dt.datetime.now(dt.UTC)

    gaps: list[float] = []
    takeovers: list[float] = []  # the kill to each orphan's first passed round by box B
    for agent_id in stack.active:
        records = _records(stack, agent_id, started)
        _assert_no_overlap(agent_id, records)
        passed = [r for r in records if r["kind"] == "round" and r["outcome"] == "passed"]
        gaps.append(_assert_no_lease_gap(agent_id, passed, settled, ended))
        after = [r for r in passed if _at(r["started_at"]) > killed_at]
        assert after, f"{agent_id}: no passed round after the kill (dropped)"
        judges = {str(r["round_id"]): _judged_by(stack, agent_id, r) for r in after}
        assert set(judges.values()) == {"box-b"}, (agent_id, killed_at, judges, after)
        if agent_id in orphaned.values():
            takeovers.append((min(_at(r["ended_at"]) for r in after) - killed_at).total_seconds())
        watchdog = [r for r in records if r["kind"] == "watchdog"]
        assert not watchdog, (agent_id, watchdog)  # nobody was recorded stale
    # The kill did orphan rounds (their locks and claims held by the dead box), and they were
    # taken over: the test exercised the takeover, not only a box that was idle.
    assert orphaned, "no round of box A was in flight at the kill"
    records_checked = stack.check_records({agent_id: 1 for agent_id in stack.active})
    stack.check_no_false_failure()
    record_figures(
        {
            "fault": "box A's worker, pool and beat SIGKILLed mid-round",
            "database": stack.database,
            "agents": len(stack.active),
            "rounds_killed_in_flight": len(orphaned),
            "lease_seconds": LEASE,
            "longest_gap_seconds": round(max(gaps), 2),
            "takeover_seconds_max": round(max(takeovers, default=0.0), 2),
            "takeover_seconds_mean": round(sum(takeovers) / max(1, len(takeovers)), 2),
            "records_checked": records_checked,
            "false_failures": 0,  # check_no_false_failure above: no event to failed, no webhook
        }
    )


def _kill_box_a_with_rounds_in_flight(
    boxes: Boxes, started: dt.datetime
) -> tuple[dt.datetime, dt.datetime, dict[str, str]]:
    """Kill box A mid-round until a kill orphans some of its rounds (the locks held at a kill may
    all be box B's: which box takes a batch is the broker's choice); box A is restarted between
    attempts, and the next attempt waits until the fleet is over the kill before (every agent
    passed since the restart, both boxes judging): one kill is what is measured, not two in a
    row inside one lease. When the last attempt began, its kill's time, and its orphans
    (round id: agent id)."""
    settled = started
    for attempt in range(KILL_ATTEMPTS):
        _wait_until_both_boxes_judge(boxes.stack, settled)
        killed_at, orphaned = _kill_box_a_mid_round(boxes)
        if orphaned or attempt == KILL_ATTEMPTS - 1:  # box A stays dead after the last kill
            break
        boxes.stack.worker.start()
        boxes.stack.beat.start()
        settled = dt.datetime.now(dt.UTC)
        boxes.stack.measure_recovery(settled, timeout=30)  # every agent passed since
    return settled, killed_at, orphaned


def _wait_until_both_boxes_judge(stack: FaultStack, since: dt.datetime) -> None:
    """Until both boxes have judged some agent's round (they share the fleet)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        seen = set()
        for agent_id in stack.active[:4]:
            for record in _records(stack, agent_id, since)[-3:]:
                seen.add(_judged_by(stack, agent_id, record))
        if seen >= {"box-a", "box-b"}:
            return
        time.sleep(INTERVAL)
    pytest.fail("the two boxes did not both judge rounds within 30 s")


def _kill_box_a_mid_round(boxes: Boxes) -> tuple[dt.datetime, dict[str, str]]:
    """Hold every answer, SIGKILL box A's worker, pool and beat while rounds are in flight;
    the kill time and the round ids (lock tokens) of box A's rounds that died in flight, each
    with its agent."""
    stack = boxes.stack
    stack.server.delay.update(dict.fromkeys(stack.active, HELD))
    try:
        # Rounds hold their agent's lock while their answer is held: kill when several are.
        deadline = time.monotonic() + 10
        while len(held := _lock_tokens(boxes.redis)) < IN_FLIGHT:
            assert time.monotonic() < deadline, "no rounds in flight"
            time.sleep(0.02)
        children = stack.worker.children()
        stack.worker.kill()
        stack.beat.kill()
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        killed_at = dt.datetime.now(dt.UTC)
    finally:
        stack.server.delay.clear()
    time.sleep(1.0)  # box B's rounds that were in flight have recorded
    recorded = {
        str(r["round_id"])
        for agent_id in stack.active
        for r in _records(stack, agent_id, killed_at - dt.timedelta(seconds=5))
    }
    return killed_at, {token: agent for token, agent in held.items() if token not in recorded}


def _lock_tokens(client: redis.Redis) -> dict[str, str]:
    """The round locks held now: lock token (the round's id) to agent id."""
    keys = [k.decode() for k in client.scan_iter(match=f"{LOCK_PREFIX}*")]
    values = client.mget(keys) if keys else []
    return {
        v.decode() if isinstance(v, bytes) else str(v): key.removeprefix(LOCK_PREFIX)
        for key, v in zip(keys, values, strict=True)
        if v is not None
    }


def _assert_no_overlap(agent_id: str, records: list[dict[str, Any]]) -> None:
    rounds = sorted((r for r in records if r["kind"] == "round"), key=lambda r: r["seq"])
    for before, after in itertools.pairwise(rounds):
        assert _at(after["started_at"]) >= _at(before["ended_at"]), (agent_id, before, after)


def _assert_no_lease_gap(
    agent_id: str, passed: list[dict[str, Any]], since: dt.datetime, until: dt.datetime
) -> float:
    """No moment in [since, until] when the agent's last passed round was older than the
    lease (what every reader would show ``stale``); the longest gap. The gap open at ``since``
    counts from the agent's pass before it."""
    ends = sorted(_at(r["ended_at"]) for r in passed)
    before = [end for end in ends if end <= since]
    ends = [before[-1] if before else since, *(end for end in ends if end > since), until]
    gaps = [(after - before).total_seconds() for before, after in itertools.pairwise(ends)]
    for gap in gaps:
        assert gap <= LEASE, f"{agent_id}: {gap:.2f} s without a passed round (lease {LEASE} s)"
    return max(gaps)


def _records(stack: FaultStack, agent_id: str, since: dt.datetime) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor: int | None = 0
    while cursor is not None:
        page = stack.verifier.get(
            f"/v1/agents/{agent_id}/rounds", params={"after_seq": cursor, "limit": 1000}
        ).json()
        found.extend(page["items"])
        cursor = page["next_after_seq"]
    return [r for r in found if r.get("kind") != "fold" and _at(r["ended_at"]) >= since]


def _judged_by(stack: FaultStack, agent_id: str, record: dict[str, Any]) -> str:
    answer = stack.verifier.get(f"/v1/agents/{agent_id}/rounds/{record['round_id']}")
    answer.raise_for_status()
    return decode_record(base64.b64decode(answer.json()["canonical"])).verifier_id


def _at(value: object) -> dt.datetime:
    return dt.datetime.fromisoformat(str(value))
