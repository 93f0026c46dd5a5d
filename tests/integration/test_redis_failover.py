"""Redis Sentinel failover under a running fleet, on real parts (``tests.support.redis_sentinel``:
a primary, a replica and three Sentinels with quorum 2, every one password-protected).

* The whole deployment (``tests.support.fault_stack``: registrar, ``geoattest verifier
  serve|worker|beat`` as processes, simulated agents and agents on swtpm) reaches Redis only
  through the Sentinels. The primary is SIGKILLed mid-run; the Sentinels promote the replica;
  the API, the worker, beat and the token service follow. No agent ever fails (no event to
  ``failed``, no webhook), no agent is shown ``attested`` past its lease, the evidence chains
  stay linked, and every agent is back to ``attested`` within the stated rounds.
* The split-brain window of asynchronous replication, made deterministic: the replica is
  promoted before it received the lock and fence a round took on the old primary, so a second
  round takes the same agent on the new primary with the *same* fence. Both judge at once; the
  SQL fence lets exactly one verdict in.
* The verifier refuses an open Sentinel, and an open primary behind password-protected ones.

Figures go to ``$GEOATTEST_FAULT_FIGURES`` like the other fault cases (``docs/reliability.md``).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import redis
import requests

from geoattest.db import make_engine
from geoattest.dev.procs import free_port, managed_process, port_accepts
from geoattest.dev.swtpm import SwtpmCa
from geoattest.errors import ConfigurationError
from geoattest.private_files import create_private_file, ensure_private_dir
from tests.support import SwtpmTemplates, swtpm_factory
from tests.support.fault_figures import record_figures
from tests.support.fault_stack import FaultStack, Outage, admit_swtpm_node, fault_stack
from tests.support.lease_watcher import LeaseWatcher
from tests.support.redis_sentinel import MASTER, SentinelGroup, require_sentinel, sentinel_group
from tests.support.runner_stack import RunnerStack, runner_stack
from verifier.core.reasons import Reason
from verifier.core.round_record import RecordOrigin
from verifier.engine.committer import Committer
from verifier.engine.runner import RoundReport, RoundRunner
from verifier.storage.group_commit import GroupCommitter
from verifier.storage.hot_state import HotState
from verifier.storage.redis_auth import check_redis_requires_auth
from verifier.storage.redis_target import RedisTarget
from verifier.storage.verdicts import VerdictStore

pytestmark = [pytest.mark.redis]

SIMULATED = 4
ON_SWTPM = 2
MAX_ROUNDS = 3  # after the promotion, counting the passing round
MAX_SECONDS = 15.0


class Deployment:
    def __init__(self, stack: FaultStack, group: SentinelGroup) -> None:
        self.stack = stack
        self.group = group


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, test_ca: SwtpmCa, swtpm_templates: SwtpmTemplates
) -> Iterator[Deployment]:
    work = tmp_path_factory.mktemp("failover")
    with ExitStack() as stack:
        group = stack.enter_context(sentinel_group(work))
        running = stack.enter_context(
            fault_stack(
                work, database="sqlite", database_url=f"sqlite:///{work / 'verifier.sqlite'}",
                registrar_database_url=f"sqlite:///{work / 'registrar.sqlite'}",
                agents=SIMULATED, extra_trust=test_ca.trust_store, redis_settings=group.settings(),
            )
        )  # fmt: skip
        factory = stack.enter_context(swtpm_factory(swtpm_templates, test_ca, work / "swtpm"))
        for index in range(ON_SWTPM):
            node = admit_swtpm_node(running, factory(), work / f"node-{index}", f"swtpm-fo{index}")
            stack.callback(node.stop_api)
        yield Deployment(running, group)


@pytest.mark.swtpm
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_primary_sigkilled_mid_run_and_the_verifier_follows_the_promotion(
    deployment: Deployment,
) -> None:
    stack, group = deployment.stack, deployment.group
    stack.wait_all_attested(30)
    old_primary = group.client(group.primary)
    assert HotState(old_primary).scheduled_count() == len(stack.active)  # rounds run on it
    old_primary.close()
    baseline = stack.last_seqs()
    events_before = {a: len(stack.verifier.events(a)) for a in stack.active}
    watcher = LeaseWatcher(stack.verifier)
    try:
        time.sleep(2.0)  # steady rounds on the primary, locks taken and released all the time
        with Outage() as outage:
            group.kill_primary()
            promoted_after = group.wait_for_failover()
        recoveries = stack.measure_recovery(outage.ended, timeout=MAX_SECONDS + 30)
    finally:
        watcher.stop()
    assert watcher.violations == [], watcher.violations[:3]
    records = stack.check_records(baseline)
    stack.check_no_false_failure()
    for agent_id in stack.active:  # attested, or stale while nothing judged it; nothing else
        since = stack.verifier.events(agent_id)[events_before[agent_id] :]
        assert {e["to_state"] for e in since} <= {"attested", "stale"}, (agent_id, since)
    ready = requests.get(stack.verifier.url + "/v1/readyz", timeout=10)  # its probe followed
    assert ready.status_code == 200, ready.text
    new_primary = group.client(group.replica)
    assert HotState(new_primary).scheduled_count() == len(stack.active)  # rounds moved over
    new_primary.close()
    worst_rounds = max(r.rounds for r in recoveries)
    worst_seconds = max(r.seconds for r in recoveries)
    record_figures(
        {
            "fault": "redis primary SIGKILLed, Sentinel failover",
            "database": stack.database,
            "agents": len(stack.active),
            "outage_seconds": round(outage.seconds, 2),
            "promotion_seconds": round(promoted_after, 2),
            "recovery_rounds_max": worst_rounds,
            "recovery_seconds_max": round(worst_seconds, 2),
            "recovery_seconds_mean": round(sum(r.seconds for r in recoveries) / len(recoveries), 2),
            "records_checked": records,
        }
    )
    assert worst_rounds <= MAX_ROUNDS, recoveries
    assert worst_seconds <= MAX_SECONDS, recoveries


# --- the window of asynchronous replication ---------------------------------------------------


def _runner_on(stack: RunnerStack, client: redis.Redis, committer: Committer) -> RoundRunner:
    """A second worker's runner: the same agents and database, another Redis."""
    return RoundRunner(
        hot=HotState(client),
        source=stack.source,
        committer=committer,
        publish=lambda _committed: None,
        cadence=stack.cadence,
        origin=RecordOrigin(verifier_id="runner-test"),
    )


def _stored_fence(database: Path, agent_id: str) -> int:
    with sqlite3.connect(database) as db:
        row = db.execute("SELECT fence FROM verifier_agents WHERE agent_id = ?", (agent_id,))
        return int(row.fetchone()[0])


def test_a_lock_lost_in_the_failover_lets_only_one_of_two_rounds_commit(tmp_path: Path) -> None:
    """Sentinel replicates asynchronously: a round's lock and fence taken on the primary just
    before it dies may never reach the replica that is promoted. The replica is promoted here
    before it saw them, so a second round takes the agent on the new primary with the same
    fence, and both judge it at once (Redis alone cannot stop that). The SQL fence lets one
    verdict in: the other is refused (``lock_lost``) and nothing is recorded twice."""
    with sentinel_group(tmp_path / "redis", sentinels=0) as group:
        url = f"redis://:{group.password}@127.0.0.1:{group.primary.port}/0"
        with runner_stack(tmp_path, url, lock_ttl=5.0) as stack:
            agent_id = next(iter(stack.sims))
            for _ in range(2):  # attested, its fence counter replicated
                report = stack.round(agent_id)
                assert report is not None
                assert report.committed is not None
            old, promoted = group.client(group.primary), group.client(group.replica)
            old.wait(1, 2000)
            promoted.replicaof("NO", "ONE")  # promoted: what the old primary writes now is lost
            before = stack.store.get_agent(agent_id)
            engine = make_engine(f"sqlite:///{stack.database}")  # the second worker's own pool
            committer = GroupCommitter(VerdictStore(engine, ()))
            second = _runner_on(stack, promoted, committer)
            hold = stack.source.hold(agent_id)  # the first round fetches, then waits
            first: list[RoundReport | None] = []
            thread = threading.Thread(target=lambda: first.append(stack.round(agent_id)))
            thread.start()
            hold.wait_taken()
            fence_old = int(old.get(f"geoattest:fence:{agent_id}") or 0)
            later = second.run(stack.target(agent_id))  # judges while the first still does
            hold.release()
            assert int(promoted.get(f"geoattest:fence:{agent_id}") or 0) == fence_old
            thread.join()
            assert later is not None
            assert later.committed is not None  # the second round committed first
            refused = first[0]
            assert refused is not None
            assert refused.committed is None, refused
            assert refused.fault is Reason.LOCK_LOST
            after = stack.store.get_agent(agent_id)
            assert after.records == before.records + 1  # one verdict for the two rounds
            assert _stored_fence(stack.database, agent_id) == fence_old
            committer.close()
            engine.dispose()
            old.close()
            promoted.close()


# --- refusing an open Sentinel ----------------------------------------------------------------


def test_the_verifier_refuses_an_open_sentinel(tmp_path: Path) -> None:
    """An open Sentinel lets anyone fail the verifier over to a Redis of their own."""
    with sentinel_group(tmp_path / "redis", for_failover=False) as group:
        binary = require_sentinel()
        port = free_port()
        home = ensure_private_dir(tmp_path / "open-sentinel")
        config = home / "sentinel.conf"
        body = (
            f"port {port}\nbind 127.0.0.1\ndir {home}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {group.primary.port} 2\n"
            f"sentinel auth-pass {MASTER} {group.password}\n"
        )
        create_private_file(config, body.encode())
        target = RedisTarget(
            url="redis://127.0.0.1/0",
            sentinels=(("127.0.0.1", group.sentinel_ports[0]), ("127.0.0.1", port)),
            master=MASTER,
            password=group.password,
            sentinel_password=group.sentinel_password,
        )
        with (
            managed_process("open-sentinel", [binary, str(config)],
                            log_path=home / "log", ready=lambda: port_accepts(port)),
            pytest.raises(ConfigurationError, match=f"Sentinel at 127.0.0.1:{port}"),
        ):  # fmt: skip
            check_redis_requires_auth(target)
        # the protected Sentinels alone pass, and name a primary that needs a password
        check_redis_requires_auth(
            RedisTarget(
                url="redis://127.0.0.1/0",
                sentinels=tuple(("127.0.0.1", p) for p in group.sentinel_ports),
                master=MASTER,
                password=group.password,
                sentinel_password=group.sentinel_password,
            )
        )


def test_the_verifier_refuses_an_open_primary_behind_protected_sentinels(tmp_path: Path) -> None:
    with sentinel_group(tmp_path / "redis", for_failover=False) as group:
        primary = group.client(group.primary)
        primary.config_set("requirepass", "")
        primary.close()
        target = RedisTarget(
            url="redis://127.0.0.1/0",
            sentinels=tuple(("127.0.0.1", p) for p in group.sentinel_ports),
            master=MASTER,
            sentinel_password=group.sentinel_password,
        )
        with pytest.raises(ConfigurationError, match=r"primary .* accepts clients without"):
            check_redis_requires_auth(target)
