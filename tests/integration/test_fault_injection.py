"""Fault injection on real parts, on SQLite and on PostgreSQL: each case breaks one part of a
running deployment (``tests.support.fault_stack``: redis-server, registrar, verifier API, Celery
worker and beat as their own processes, simulated agents over mTLS and one real agent on
swtpm), lets it come back, and checks for the whole fleet:

* no false failure: no event to ``failed`` (what revokes) and no webhook delivered;
* no evidence record lost beyond the outage: each agent's chain from before the fault on is
  consecutive and linked (``check_chain`` over the records' canonical bytes from the API);
* the lease held throughout: the API never showed an agent ``attested`` past its max age
  (``LeaseWatcher``);
* every agent back to ``attested`` within the case's stated number of rounds and seconds after
  the fault ended (the first passing round that started after it, from the records).

The figures of each case go to ``$GEOATTEST_FAULT_FIGURES`` (JSON lines) when it is set;
``docs/reliability.md`` lists them and how they were taken.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from geoattest.dev.swtpm import SwtpmCa
from tests.support import SwtpmTemplates, swtpm_factory
from tests.support.fault_figures import record_figures
from tests.support.fault_stack import (
    SWTPM_ALLOWED,
    FaultStack,
    Outage,
    Recovery,
    admit_swtpm_node,
    fault_stack,
)
from tests.support.lease_watcher import LeaseWatcher
from tests.support.postgres_server import PostgresServer
from tests.support.swtpm_agent import Node
from verifier.storage.hot_state import HotState

pytestmark = [pytest.mark.redis, pytest.mark.swtpm, pytest.mark.slow, pytest.mark.timeout(120)]

AGENTS = 6  # simulated agents under verification from the start (plus one on swtpm)
SPARE = 2  # enrolled, added during the registrar case
INTERVAL = 0.5  # the stack's round interval (verifier_settings)
DB_OUTAGE = 10.0


@dataclass
class Deployment:
    stack: FaultStack
    node: Node


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)],
)
def deployment(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    test_ca: SwtpmCa,
    swtpm_templates: SwtpmTemplates,
) -> Iterator[Deployment]:
    database = str(request.param)
    work = tmp_path_factory.mktemp(f"faults-{database}")
    with ExitStack() as stack:
        if database == "sqlite":
            url = f"sqlite:///{work / 'verifier.sqlite'}"
            registrar_url = f"sqlite:///{work / 'registrar.sqlite'}"
        else:
            server: PostgresServer = request.getfixturevalue("postgres_server")
            url = stack.enter_context(server.database())
            registrar_url = stack.enter_context(server.database())
        running = stack.enter_context(
            fault_stack(
                work, database=database, database_url=url, registrar_database_url=registrar_url,
                agents=AGENTS, spare=SPARE, extra_trust=test_ca.trust_store,
            )
        )  # fmt: skip
        factory = stack.enter_context(swtpm_factory(swtpm_templates, test_ca, work / "swtpm"))
        node = admit_swtpm_node(running, factory(), work / "node", f"swtpm-{database}")
        stack.callback(node.stop_api)
        yield Deployment(stack=running, node=node)


@pytest.fixture
def stack(deployment: Deployment) -> Iterator[FaultStack]:
    """The deployment, healthy at the start of the case, watched throughout."""
    running = deployment.stack
    running.wait_all_attested(30)
    watcher = LeaseWatcher(running.verifier)
    yield running
    watcher.stop()
    assert watcher.violations == [], watcher.violations[:3]


def _survived(
    stack: FaultStack,
    fault: str,
    inject: Callable[[], None],
    *,
    max_rounds: int,
    max_seconds: float,
) -> list[Recovery]:
    """Run ``inject`` (the fault, from its start to its end), then check the fleet as the module
    docstring says and record the figures."""
    baseline = stack.last_seqs()
    with Outage() as outage:
        inject()
    recoveries = stack.measure_recovery(outage.ended, timeout=max_seconds + 30)
    records = stack.check_records(baseline)
    stack.check_no_false_failure()
    worst_rounds = max(r.rounds for r in recoveries)
    worst_seconds = max(r.seconds for r in recoveries)
    record_figures(
        {
            "fault": fault,
            "database": stack.database,
            "agents": len(stack.active),
            "outage_seconds": round(outage.seconds, 2),
            "recovery_rounds_max": worst_rounds,
            "recovery_seconds_max": round(worst_seconds, 2),
            "recovery_seconds_mean": round(sum(r.seconds for r in recoveries) / len(recoveries), 2),
            "records_checked": records,
        }
    )
    assert worst_rounds <= max_rounds, recoveries
    assert worst_seconds <= max_seconds, recoveries
    return recoveries


# --- Redis ------------------------------------------------------------------------------------


def test_redis_restarted_without_persistence(stack: FaultStack) -> None:
    """Redis comes back empty: schedule, locks, fence counters, round memory and the queue are
    gone. The reconcile task rebuilds the schedule from SQL, Celery reconnects, and each
    agent's first commit is refused on its fence (Redis counts again from 1) and lifts it."""

    def inject() -> None:
        stack.redis.restart(down_for=2.0)

    _survived(stack, "redis restarted, no persistence", inject, max_rounds=3, max_seconds=10)
    hot = HotState(redis.Redis.from_url(stack.redis.url))
    assert hot.scheduled_count() == len(stack.active)


def test_redis_restarted_with_persistence(stack: FaultStack) -> None:
    """Redis with an append-only file (``--appendonly yes``) comes back with its data: nothing
    is rebuilt, rounds go on where they were."""
    client = redis.Redis.from_url(stack.redis.url)
    client.config_set("appendonly", "yes")  # rewrites the file from what Redis holds now
    _wait_for(lambda: _aof_ready(client), "the append-only file written")
    client.close()
    stack.redis.persistent = True

    def inject() -> None:
        stack.redis.restart(down_for=2.0)

    try:
        # The same bound as without persistence: nothing is rebuilt, but the rounds claimed by
        # the dispatch that met the outage may still wait out their claim horizon (~4 s), behind
        # the worker's reconnect (every 0.5-1 s, ``verifier.broker_retry``). With kombu's own
        # backoff (2 s, then 4 s) a CI run on a loaded machine took 13-16 s.
        _survived(stack, "redis restarted, append-only file", inject, max_rounds=2, max_seconds=10)
    finally:
        stack.redis.persistent = False
        redis.Redis.from_url(stack.redis.url).config_set("appendonly", "no")


def _aof_ready(client: redis.Redis) -> bool:
    info = client.info("persistence")
    return bool(info["aof_enabled"]) and not info["aof_rewrite_in_progress"]


# --- worker and beat --------------------------------------------------------------------------


def _kill_mid_batch(stack: FaultStack, kill: Callable[[], None]) -> None:
    """Hold every agent's answer for a while, and kill once rounds are in flight."""
    in_flight = threading.Event()
    stack.server.on_evidence = lambda _agent_id: in_flight.set()
    stack.server.delay.update(dict.fromkeys(stack.active, 1.5))
    try:
        assert in_flight.wait(10), "no round in flight"
        time.sleep(0.2)  # the evidence request was read: the round is waiting for its answer
        kill()
    finally:
        stack.server.on_evidence = None
        stack.server.delay.clear()


def test_a_pool_process_sigkilled_mid_batch(stack: FaultStack) -> None:
    """One pool process dies with rounds in flight (their locks held); Celery replaces it and
    redelivers the batch, whose rounds find the dead process's locks and retry when they
    expire (``lock_ttl``), instead of waiting for the claim horizon."""

    def inject() -> None:
        _kill_mid_batch(stack, lambda: _sigkill_all(stack.worker.children()))

    _survived(stack, "worker pool process SIGKILLed mid-batch", inject, max_rounds=2,
              max_seconds=15)  # fmt: skip


def test_the_whole_worker_sigkilled_mid_batch_and_restarted(stack: FaultStack) -> None:
    """The worker and its pool die with rounds in flight, and a new worker starts: the lost
    batches' agents are claimed again after the claim horizon (the default lease)."""

    def inject() -> None:
        def kill() -> None:
            children = stack.worker.children()
            stack.worker.kill()
            _sigkill_all(children)

        _kill_mid_batch(stack, kill)
        stack.worker.start()

    _survived(stack, "worker SIGKILLed mid-batch, restarted", inject, max_rounds=2,
              max_seconds=15)  # fmt: skip


def test_beat_killed_and_restarted(stack: FaultStack) -> None:
    """Nothing dispatches rounds or runs the watchdog for 3 s: leases run out on every reader
    (the lease is derived at read time), and rounds resume when beat is back."""

    def inject() -> None:
        stack.beat.kill()
        time.sleep(3.0)
        stack.beat.start()

    _survived(stack, "beat SIGKILLed, restarted after 3 s", inject, max_rounds=2, max_seconds=8)


def _sigkill_all(pids: list[int]) -> None:
    assert pids, "no process to kill"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


# --- verifier API and registrar ---------------------------------------------------------------


def test_the_verifier_api_sigkilled_and_restarted(stack: FaultStack) -> None:
    """Rounds do not depend on the API process; after its restart it shows the same states."""

    def inject() -> None:
        stack.api.kill()
        with pytest.raises(requests.ConnectionError):
            stack.verifier.get("/v1/healthz")
        stack.api.start()

    _survived(stack, "verifier API SIGKILLed, restarted", inject, max_rounds=1, max_seconds=5)


def test_the_registrar_down_while_agents_are_added(stack: FaultStack) -> None:
    """Adding an agent needs its identity from the registrar: with the registrar down the
    answer is a clear 503 ``registrar_unreachable`` and nothing is stored (no agent row, not
    scheduled); the fleet already verified goes on, and the same call succeeds afterwards."""
    sim = stack.spare()
    hot = HotState(redis.Redis.from_url(stack.redis.url))

    def inject() -> None:
        stack.registrar.server.stop()
        try:
            refused = stack.verifier.add_agent(sim.agent_id, "edge")
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "registrar_unreachable"
            assert stack.verifier.get(f"/v1/agents/{sim.agent_id}").status_code == 404
            assert hot.due_of(sim.agent_id) is None
            time.sleep(2.0)  # the fleet keeps attesting meanwhile (checked by the records)
        finally:
            stack.registrar.server.start()

    _survived(stack, "registrar down while agents are added", inject, max_rounds=1, max_seconds=5)
    stack.admit(sim.agent_id)
    stack.wait_all_attested(15)


# --- database ---------------------------------------------------------------------------------


def test_the_database_unavailable_for_10_seconds(
    stack: FaultStack, request: pytest.FixtureRequest
) -> None:
    """SQLite: another process holds the write lock (``BEGIN EXCLUSIVE``) for 10 s. PostgreSQL:
    the database refuses connections and its open ones are ended for 10 s. Nothing can be
    recorded: leases run out (``stale`` on every reader, nothing written), readiness says
    ``database``, and rounds record again once it is back."""
    readiness: list[dict[str, Any]] = []

    def inject() -> None:
        if stack.database == "sqlite":
            path = Path(stack.database_url.removeprefix("sqlite:///"))
            locker = sqlite3.connect(path, timeout=5)
            locker.execute("BEGIN EXCLUSIVE")
            try:
                _during_db_outage(stack, readiness)
            finally:
                locker.rollback()
                locker.close()
        else:
            server: PostgresServer = request.getfixturevalue("postgres_server")
            server.block(stack.database_url)
            try:
                _during_db_outage(stack, readiness)
                refused = stack.verifier.put_policy("during-outage", {"ima_banks": ["sha256"]})
                assert refused.status_code == 503, refused.text
                assert refused.json()["error"]["code"] == "dependency_unavailable"
            finally:
                server.unblock(stack.database_url)

    _survived(stack, f"database unavailable {DB_OUTAGE:.0f} s", inject, max_rounds=3,
              max_seconds=15)  # fmt: skip
    assert any("database" in body.get("down", []) for body in readiness), readiness


def _during_db_outage(stack: FaultStack, readiness: list[dict[str, Any]]) -> None:
    ends = time.monotonic() + DB_OUTAGE
    while time.monotonic() < ends:
        try:
            answer = requests.get(stack.verifier.url + "/v1/readyz", timeout=5)
            readiness.append(answer.json())
        except (requests.RequestException, ValueError):
            pass
        time.sleep(1.0)


# --- the agents themselves --------------------------------------------------------------------


def test_an_agents_swtpm_restarted_without_shutdown(
    stack: FaultStack, deployment: Deployment
) -> None:
    """A power cut of the real agent's TPM (no TPM2_Shutdown) and a fresh boot: the verifier
    sees a reboot (resetCount up), replays the new IMA log from its start, no failure."""
    node = deployment.node

    def inject() -> None:
        node.swtpm.restart(orderly=False)
        node.ima.new_boot()
        node.ima.boot_aggregate()
        node.ima.measure("/usr/bin/bash", SWTPM_ALLOWED["/usr/bin/bash"])

    _survived(stack, "agent swtpm restarted (power cut)", inject, max_rounds=2, max_seconds=5)
    status = stack.verifier.status(node.agent_id)
    assert status["ima_entries_verified"] == 2, status


def test_agent_tpm_clocks_jumping(stack: FaultStack) -> None:
    """Half the simulated TPMs' clocks jump an hour ahead (``TPM2_ClockSet`` moves it forward
    only), one jumps back 5 s (a real TPM never reports a lower clock within a boot; the
    software TPM keeps its highest value too): rounds go on, none fails."""
    sims = [stack.sims[a] for a in stack.active if a in stack.sims]

    def inject() -> None:
        for sim in sims[: len(sims) // 2]:
            sim.tpm.jump_clock(3_600_000)
        sims[-1].tpm.jump_clock(-5_000)
        time.sleep(4 * INTERVAL)

    _survived(stack, "agent TPM clocks jump (+1 h, -5 s)", inject, max_rounds=1, max_seconds=2)


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not {what} in {timeout:.0f} s"
        time.sleep(0.1)


# --- what the processes write meanwhile -------------------------------------------------------


_ONCE = re.compile(r" INFO verifier\.storage\.log: transparency log \S+ created$")


def _info_lines(text: str) -> list[str]:
    """Info lines, but the log's creation (once per deployment, at its first checkpoint)."""
    return [line for line in text.splitlines() if " INFO " in line and not _ONCE.search(line)]


def test_at_rest_nothing_is_logged_at_info_and_a_state_change_is_one_line(
    stack: FaultStack,
) -> None:
    """Dispatch ticks, batches, watchdog and reconcile write nothing at info (the worker and beat
    run at INFO); an agent going unreachable and coming back writes one info line each way.
    The one line a deployment writes once in its life, the transparency log's creation at its
    first checkpoint, may fall in the window and is not counted."""
    time.sleep(2.0)  # every pool process has run a batch: its first fleet load is start-up
    worker_from, beat_from = stack.worker.log_size(), stack.beat.log_size()
    time.sleep(3.0)  # about 12 dispatch ticks and 40 rounds
    assert _info_lines(stack.worker.log_since(worker_from)) == []
    assert _info_lines(stack.beat.log_since(beat_from)) == []
    agent_id = next(a for a in stack.active if a in stack.sims)
    stack.server.offline.add(agent_id)
    try:
        stack.verifier.wait_for_state(agent_id, "unreachable", timeout=15)
    finally:
        stack.server.offline.discard(agent_id)
    stack.verifier.wait_for_state(agent_id, "attested", timeout=15)
    time.sleep(1.0)  # the worker's handler flushed
    lines = _info_lines(stack.worker.log_since(worker_from))
    changes = [line.split(": ", 1)[1] for line in lines]
    assert len(changes) == 2, lines
    assert changes[0].startswith(f"agent {agent_id}: attested -> unreachable ("), lines
    assert changes[1].startswith(f"agent {agent_id}: unreachable -> attested ("), lines


def test_the_list_shows_the_live_fields_of_the_single_view(stack: FaultStack) -> None:
    """``GET /v1/agents`` and ``GET /v1/agents/<id>`` read the same status: every field but the
    lease's remaining seconds (a function of the request's own time) is the same."""
    for agent_id in stack.active:
        for _ in range(20):  # a round may end between the two reads: read both again
            item = stack.statuses()[agent_id]
            single = stack.verifier.status(agent_id)
            if single["records"] == item["records"]:
                break
        else:
            pytest.fail(f"{agent_id}: the two reads never saw the same round")
        assert item["last_round_at"] is not None, item
        assert item["ima_entries_verified"] is not None, item
        for view in (single, item):
            view.pop("lease_remaining_seconds")
        assert item == single
