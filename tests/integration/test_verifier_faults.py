"""The four ways rounds could stop without a verdict, end to end, on real parts (simulated agents
over mTLS, registrar, verifier API, Celery worker + beat, redis-server, SQLite): each agent leaves
``attested`` within its lease and never comes back without a passing round. Plus a worker killed
mid-round and a database that refuses writes for a while: no false failure, and recovery.

Throughout, a watcher polls the API and checks the lease invariant: the API never shows an agent
``attested`` whose last passed round is older than its max age.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.agent_simulator import AgentSimulator
from tests.support.lease_watcher import LeaseWatcher
from tests.support.simulated_fleet import SimulatedFleet, simulated_fleet
from verifier.storage.hot_state import HotState

pytestmark = [pytest.mark.redis, pytest.mark.slow]

MAX_AGE = 4.0  # 2 x 0.5 s interval + 2 s agent timeout + 1 s (the default lease in these tests)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatedFleet]:
    with simulated_fleet(tmp_path_factory.mktemp("faults"), agents=40) as running:
        yield running


@pytest.fixture
def watcher(fleet: SimulatedFleet) -> Iterator[LeaseWatcher]:
    watching = LeaseWatcher(fleet.verifier)
    yield watching
    watching.stop()
    assert watching.violations == [], watching.violations[:3]


def _database(fleet: SimulatedFleet) -> Path:
    return fleet.workdir / "verifier.sqlite"


def _bump_config(fleet: SimulatedFleet) -> None:
    client = redis.Redis.from_url(fleet.redis_url)
    client.incr("geoattest:config-version")
    client.close()


def _left_attested_within_the_lease(
    fleet: SimulatedFleet, sim: AgentSimulator, since: float, state: str
) -> dict[str, object]:
    status = fleet.verifier.wait_for_state(sim.agent_id, state, timeout=MAX_AGE + 10)
    assert time.monotonic() - since < MAX_AGE + 6, "left attested too late"
    return status


def _never_failed(fleet: SimulatedFleet, sim: AgentSimulator) -> None:
    events = fleet.verifier.events(sim.agent_id)
    assert all(event["to_state"] != "failed" for event in events), events


def test_an_error_answer_with_an_unstorable_code_is_a_recorded_fault(
    fleet: SimulatedFleet, watcher: LeaseWatcher
) -> None:
    """Class 1: the agent answers an error whose code and message cannot be stored as they are
    (a lone surrogate, 2,000 characters, a newline): bounded and sanitised, the round records a
    protocol fault (today's first fail-open path: the write raised, the agent stayed attested)."""
    sim = fleet.attested_agent()
    code = "\\ud800" + "x" * 2000 + "\\nforged log line"
    body = ('{"error": {"code": "' + code + '", "message": "' + code + '"}}').encode()
    started = time.monotonic()
    fleet.server.refuse[sim.agent_id] = (400, body)
    status = _left_attested_within_the_lease(fleet, sim, started, "unreachable")
    assert status["reason"] == "agent_protocol_mismatch"
    message = str(status["message"])
    assert len(message) <= 1000
    assert "\n" not in message
    assert all(" " <= char <= "~" for char in message)
    fleet.server.refuse.pop(sim.agent_id)
    fleet.verifier.wait_for_state(sim.agent_id, "attested")
    _never_failed(fleet, sim)


def test_slow_drip_agents_become_unreachable_and_starve_nobody(
    fleet: SimulatedFleet, watcher: LeaseWatcher
) -> None:
    """Class 2: agents that send headers and then a byte a second. Each is cut at the round's
    total deadline (a per-recv timeout never fires), and twenty of them (more than a worker's
    round threads) cannot keep a tampered agent elsewhere attested."""
    slow = [fleet.attested_agent() for _ in range(20)]
    victim = fleet.attested_agent()
    started = time.monotonic()
    fleet.server.trickle.update(sim.agent_id for sim in slow)
    time.sleep(1.0)
    victim.measure("/tmp/cryptominer", content=b"evil")
    tampered_at = time.monotonic()
    fleet.verifier.wait_for_state(victim.agent_id, "failed", timeout=MAX_AGE + 4)
    assert time.monotonic() - tampered_at < MAX_AGE + 2
    for sim in slow:
        status = _left_attested_within_the_lease(fleet, sim, started, "unreachable")
        assert status["reason"] == "agent_deadline_exceeded", status
    fleet.server.trickle.clear()
    for sim in slow:
        fleet.verifier.wait_for_state(sim.agent_id, "attested", timeout=60)
        _never_failed(fleet, sim)


def test_an_agent_record_whose_url_does_not_parse_is_a_recorded_fault(
    fleet: SimulatedFleet, watcher: LeaseWatcher
) -> None:
    """Class 3: every round used to raise before the fetch; now the round records a fault."""
    sim = fleet.attested_agent()
    good = fleet.server.agent_url(sim.agent_id)
    with sqlite3.connect(_database(fleet)) as db:
        db.execute(
            "UPDATE verifier_agents SET agent_url = ? WHERE agent_id = ?",
            ("https://127.0.0.1:99999/agents/x", sim.agent_id),
        )
    _bump_config(fleet)
    started = time.monotonic()
    status = _left_attested_within_the_lease(fleet, sim, started, "unreachable")
    assert status["reason"] == "agent_url_invalid"
    with sqlite3.connect(_database(fleet)) as db:
        db.execute(
            "UPDATE verifier_agents SET agent_url = ? WHERE agent_id = ?", (good, sim.agent_id)
        )
    _bump_config(fleet)
    fleet.verifier.wait_for_state(sim.agent_id, "attested")
    _never_failed(fleet, sim)


def test_a_policy_that_breaks_on_reload_makes_its_agents_stale_visibly(
    fleet: SimulatedFleet, watcher: LeaseWatcher
) -> None:
    """Class 4: a stored policy that no longer loads (written by another version, edited by
    hand): its agents are not judged, and they go stale naming the policy."""
    document = _policy_of(fleet)
    assert fleet.verifier.put_policy("fragile", document).status_code == 200
    sim = fleet.attested_agent("fragile")
    with sqlite3.connect(_database(fleet)) as db:
        db.execute(
            "UPDATE verifier_policies SET document = ? WHERE name = 'fragile'",
            ('{"runtime_policy": {"version": 99}}',),
        )
    _bump_config(fleet)
    started = time.monotonic()
    _left_attested_within_the_lease(fleet, sim, started, "stale")
    status = _wait_for_reason(fleet, sim, "policy_unusable")  # the watchdog names the cause
    assert status["stored_state"] == "stale"
    assert "fragile" in str(status["message"])
    assert fleet.verifier.put_policy("fragile", document).status_code == 200
    fleet.verifier.wait_for_state(sim.agent_id, "attested")
    _never_failed(fleet, sim)


def test_the_api_refuses_a_policy_it_could_not_reload(fleet: SimulatedFleet) -> None:
    broken_policies: list[dict[str, object]] = [
        {"max_age_seconds": float("nan")},
        {"max_age_seconds": -1},
        {"ima_banks": []},
        {"runtime_policy": {"version": 1, "digests": {}, "excludes": [], "x": float("inf")}},
    ]
    for broken in broken_policies:
        response = fleet.verifier.request(
            "PUT",
            "/v1/policies/broken",
            data=_json_with_nan(broken),
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 400, (broken, response.text)
        assert response.json()["error"]["code"] in ("policy_invalid", "malformed_request")


def test_a_worker_killed_mid_round_leaves_no_false_failure(
    fleet: SimulatedFleet, watcher: LeaseWatcher
) -> None:
    sims = [fleet.attested_agent() for _ in range(4)]
    pool = _pool_processes(fleet)
    assert pool, "no Celery pool process found"
    os.kill(pool[0], signal.SIGKILL)  # billiard replaces it; its in-flight rounds are lost
    for sim in sims:
        fleet.serve_rounds(sim, 3)
        fleet.verifier.wait_for_state(sim.agent_id, "attested", timeout=30)
        _never_failed(fleet, sim)


def test_a_database_that_refuses_writes_ends_leases_then_recovers(
    fleet: SimulatedFleet, watcher: LeaseWatcher
) -> None:
    """Nothing can be recorded for a while (another process holds the write lock): no round
    renews a lease, so agents go stale on every reader; afterwards they attest again."""
    sims = [fleet.attested_agent() for _ in range(3)]
    locker = sqlite3.connect(_database(fleet), timeout=1)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        for sim in sims:
            status = fleet.verifier.wait_for_state(sim.agent_id, "stale", timeout=MAX_AGE + 6)
            assert status["stored_state"] == "attested"  # nothing could be written …
    finally:
        locker.rollback()
        locker.close()
    for sim in sims:  # … and the lease alone kept every reader honest
        fleet.verifier.wait_for_state(sim.agent_id, "attested", timeout=30)
        _never_failed(fleet, sim)


def _wait_for_reason(fleet: SimulatedFleet, sim: AgentSimulator, reason: str) -> dict[str, object]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = fleet.verifier.status(sim.agent_id)
        if status["reason"] == reason:
            return status
        time.sleep(0.1)
    pytest.fail(f"{sim.agent_id} never gave reason {reason}: {status}")


def _policy_of(fleet: SimulatedFleet) -> dict[str, object]:
    response = fleet.verifier.get("/v1/policies/edge")
    document: dict[str, object] = response.json()["document"]
    return document


def _json_with_nan(body: dict[str, object]) -> bytes:
    import json

    return json.dumps(body).encode()  # Python writes NaN/Infinity, as a careless client might


def _pool_processes(fleet: SimulatedFleet) -> list[int]:
    """Pids of the Celery pool processes that ran rounds lately (their heartbeats in Redis)."""
    hot = HotState(redis.Redis.from_url(fleet.redis_url))
    return [int(worker_id.rpartition(":")[2]) for worker_id in hot.workers_seen()]
