"""The round engine in-process: ``RoundRunner`` over a ``SimulatedSource``, a real Redis and a
real SQLite file (or a given PostgreSQL database), with the production store, group committer
and watchdog.

Tests drive rounds one by one (``stack.round(agent_id)``) and look at what was committed, so the
runner's every branch (stale lock, fence, backoff, faults, repair) is reachable without Celery.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from geoattest.db import make_engine, migrate, session_factory
from geoattest.wire import PolicyDocument
from tests.support.agent_simulator import AgentSimulator, make_simulators, policy_document
from tests.support.simulated_source import SimulatedSource, sim_url
from tests.support.software_pki import make_ca
from verifier.core.policy import canonical_document, document_digest
from verifier.core.round_record import RecordOrigin
from verifier.core.states import AgentState
from verifier.engine.cadence import Cadence
from verifier.engine.fleet import FleetConfig, LeaseDefaults, load_fleet
from verifier.engine.round_target import RoundTarget
from verifier.engine.runner import RoundReport, RoundRunner
from verifier.engine.watchdog import Watchdog
from verifier.notify.revocations import EventPublisher
from verifier.storage.group_commit import GroupCommitter
from verifier.storage.hot_state import HotState
from verifier.storage.records import RecordStore
from verifier.storage.runtime_digests import RuntimeDigests
from verifier.storage.sql import AgentTarget, VerifierStore
from verifier.storage.verdicts import CommitResult, Committed, VerdictDraft, VerdictStore

POLICY = "edge"
SQLITE = "sqlite:///"
ALLOWED = {"/usr/bin/bash": b"bash"}


@dataclass
class RunnerStack:
    sims: dict[str, AgentSimulator]
    source: SimulatedSource
    store: VerifierStore
    records: RecordStore
    hot: HotState
    runner: RoundRunner
    committer: GroupCommitter[VerdictDraft, CommitResult]
    watchdog: Watchdog
    cadence: Cadence
    database_url: str
    published: list[Committed] = field(default_factory=list)

    @property
    def database(self) -> Path:
        """The SQLite file (a stack on PostgreSQL has none)."""
        if not self.database_url.startswith(SQLITE):
            raise ValueError(f"not a SQLite stack: {self.database_url}")
        return Path(self.database_url.removeprefix(SQLITE))

    def fleet(self) -> FleetConfig:
        return load_fleet(self.store, None, self.hot.config_version())

    def target(self, agent_id: str) -> RoundTarget:
        fleet = self.fleet()
        target = fleet.targets[agent_id]
        return RoundTarget(
            target=target, ak=fleet.aks[agent_id], policy=fleet.policies[target.policy_name]
        )

    def round(self, agent_id: str) -> RoundReport | None:
        return self.runner.run(self.target(agent_id))

    def state(self, agent_id: str) -> AgentState:
        return self.store.get_agent(agent_id).state

    def expire(self) -> int:
        return self.watchdog.expire(self.fleet(), dt.datetime.now(dt.UTC))


@contextmanager
def runner_stack(
    workdir: Path,
    redis_url: str,
    *,
    agents: int = 3,
    lock_ttl: float = 5.0,
    commit_timeout: float = 5.0,
    max_age: float = 30.0,
    publish_events: bool = False,
    database_url: str | None = None,
) -> Iterator[RunnerStack]:
    """``publish_events``: also publish committed transitions on the Redis channels, as the
    worker does (the token service listens to them). ``database_url``: an empty database to
    use instead of a SQLite file in ``workdir`` (a PostgreSQL one, say)."""
    database_url = database_url or f"{SQLITE}{workdir / 'verifier.sqlite'}"
    engine = make_engine(database_url)
    migrate(engine)
    sessions = session_factory(engine)
    store = VerifierStore(sessions)
    sims = make_simulators(agents, make_ca(), prefix="run")
    canonical = canonical_document(PolicyDocument.model_validate(policy_document(sims[0], ALLOWED)))
    now = dt.datetime.now(dt.UTC)
    store.put_policy(POLICY, canonical, document_digest(canonical), now)
    for sim in sims:
        store.add_agent(
            AgentTarget(
                agent_id=sim.agent_id,
                policy_name=POLICY,
                ak_public=sim.ak_public,
                agent_url=sim_url(sim.agent_id),
                tls_certificate=b"pinned certificate",
                state=AgentState.REGISTERED,
            ),
            now,
        )
    client = redis.Redis.from_url(redis_url)
    hot = HotState(client)
    committer = GroupCommitter(VerdictStore(engine, ("http://127.0.0.1:9/hook",)))
    source = SimulatedSource(sims)
    cadence = Cadence(
        interval=0.2, lock_ttl=lock_ttl, backoff_max=3.0, commit_timeout=commit_timeout
    )
    origin = RecordOrigin(verifier_id="runner-test")
    published: list[Committed] = []
    events = EventPublisher(hot=hot, enqueue_delivery=lambda _delivery: None)

    def publish(committed: Committed) -> None:
        published.append(committed)
        if publish_events:
            events(committed)

    runner = RoundRunner(
        hot=hot,
        source=source,
        committer=committer,
        publish=publish,
        cadence=cadence,
        origin=origin,
        clock=time.time,
        measured=RuntimeDigests(client),
    )
    watchdog = Watchdog(
        store=store,
        hot=hot,
        committer=committer,
        publish=publish,
        lease=LeaseDefaults(max_age=dt.timedelta(seconds=max_age)),
        origin=origin,
    )
    try:
        yield RunnerStack(
            sims={sim.agent_id: sim for sim in sims},
            source=source,
            store=store,
            records=RecordStore(sessions),
            hot=hot,
            runner=runner,
            committer=committer,
            watchdog=watchdog,
            cadence=cadence,
            database_url=database_url,
            published=published,
        )
    finally:
        committer.close()
        client.close()
        engine.dispose()
