"""A whole verifier deployment whose every part a fault test can kill, stop or block, on SQLite or
PostgreSQL: redis-server (restartable, with or without an append-only file), the registrar (an
HTTP server that goes down and comes back on its port), the verifier API, its Celery worker and
its beat as three ``geoattest verifier serve|worker|beat`` processes, simulated agents over mTLS,
and a webhook receiver that counts what it is sent.

``FaultStack.measure_recovery`` and ``FaultStack.check_records`` read only the public API (the
agents' lease view, their rounds and their records' canonical bytes), as an operator would.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from flask import Flask, Response, request

from geoattest.access.keys import Role
from geoattest.dev.procs import free_port
from geoattest.dev.swtpm import SwtpmInstance
from tests.support.access import issue_api_key
from tests.support.agent_simulator import AgentSimulator, make_simulators, policy_document
from tests.support.fleet_server import FleetServer, enrol_fleet, fleet_tls, serve_fleet
from tests.support.redis_server import RedisServer
from tests.support.registrar_server import RunningRegistrar, running_registrar, trust_dir_with
from tests.support.served_app import ServedApp
from tests.support.service_process import ServiceProcess, verifier_api, verifier_celery
from tests.support.software_pki import make_ca
from tests.support.swtpm_agent import Node, sha256_of, start_node, swtpm_node_policy
from tests.support.verifier_stack import RunningVerifier, settings_environment, verifier_settings
from verifier.core.chain import FoldLink, RecordLink, check_chain

POLICY = "edge"
SWTPM_POLICY = "swtpm-edge"  # the policy of agents on a real swtpm (admit_swtpm_node)
SWTPM_ALLOWED = {"/usr/bin/bash": b"bash"}


@dataclass
class WebhookReceiver:
    """Counts the webhook deliveries it is sent (any would be an integrity failure here)."""

    served: ServedApp
    received: list[dict[str, object]] = field(default_factory=list)


def _webhook_receiver() -> WebhookReceiver:
    app = Flask("webhook-receiver")
    receiver = WebhookReceiver(served=ServedApp(app, "webhooks"))

    @app.post("/hook")
    def hook() -> Response:
        receiver.received.append(json.loads(request.get_data() or b"{}"))
        return Response(status=204)

    receiver.served.start()
    return receiver


@dataclass(frozen=True, slots=True)
class Recovery:
    """How an agent came back after a fault ended: rounds it took (the first passing one
    included) and seconds from the fault's end to that round's end."""

    agent_id: str
    rounds: int
    seconds: float


@dataclass
class FaultStack:
    database: str  # sqlite | postgresql
    database_url: str
    workdir: Path
    redis_server: RedisServer | None  # None: Redis is reached through Sentinel
    registrar: RunningRegistrar
    api: ServiceProcess
    worker: ServiceProcess
    beat: ServiceProcess
    verifier: RunningVerifier
    server: FleetServer
    sims: dict[str, AgentSimulator]
    webhooks: WebhookReceiver
    active: list[str] = field(default_factory=list)  # agent ids under verification

    @property
    def redis(self) -> RedisServer:
        """The stack's own redis-server (not for a stack on Sentinel)."""
        assert self.redis_server is not None, "this stack reaches Redis through Sentinel"
        return self.redis_server

    def spare(self) -> AgentSimulator:
        """A simulated agent enrolled at the registrar and not yet under verification."""
        return next(sim for agent_id, sim in self.sims.items() if agent_id not in self.active)

    def admit(self, agent_id: str, policy: str = POLICY) -> None:
        response = self.verifier.add_agent(agent_id, policy)
        assert response.status_code == 201, response.text
        self.active.append(agent_id)

    # --- observing ------------------------------------------------------------------------

    def statuses(self) -> dict[str, dict[str, object]]:
        agents = self.verifier.get("/v1/agents").json()["agents"]
        return {str(agent["agent_id"]): agent for agent in agents}

    def last_seqs(self) -> dict[str, int]:
        """Each active agent's newest record seq (the baseline before a fault)."""
        return {agent_id: self._last_seq(agent_id) for agent_id in self.active}

    def wait_all_attested(self, timeout: float) -> float:
        """Seconds until every active agent reads ``attested`` (the API may be restarting)."""
        started = time.monotonic()
        deadline = started + timeout
        last: dict[str, dict[str, object]] = {}
        while time.monotonic() < deadline:
            try:
                last = self.statuses()
            except (requests.RequestException, ValueError, KeyError):
                time.sleep(0.1)
                continue
            if all(last.get(a, {}).get("state") == "attested" for a in self.active):
                return time.monotonic() - started
            time.sleep(0.1)
        lagging = {
            a: last.get(a) for a in self.active if last.get(a, {}).get("state") != "attested"
        }
        raise AssertionError(f"not attested {timeout:.0f} s after the fault: {lagging}")

    def measure_recovery(self, fault_ended: dt.datetime, timeout: float) -> list[Recovery]:
        """Wait until every active agent has a passing round that started after
        ``fault_ended``; how many rounds and seconds each took."""
        self.wait_all_attested(timeout)
        deadline = time.monotonic() + timeout
        recoveries = []
        for agent_id in self.active:
            while True:
                found = self._recovery_of(agent_id, fault_ended)
                if found is not None:
                    recoveries.append(found)
                    break
                assert time.monotonic() < deadline, f"{agent_id}: no passing round after fault"
                time.sleep(0.1)
        return recoveries

    def _recovery_of(self, agent_id: str, fault_ended: dt.datetime) -> Recovery | None:
        rounds = 0
        for item in self._rounds(agent_id):
            if item.get("kind") != "round":
                continue
            started = dt.datetime.fromisoformat(str(item["started_at"]))
            if started < fault_ended:
                continue
            rounds += 1
            if item["outcome"] == "passed":
                ended = dt.datetime.fromisoformat(str(item["ended_at"]))
                return Recovery(
                    agent_id=agent_id,
                    rounds=rounds,
                    seconds=(ended - fault_ended).total_seconds(),
                )
        return None

    def check_records(self, baseline: dict[str, int]) -> int:
        """Every active agent's chain from its baseline record on: consecutive seqs, each
        record naming the digest of the one before (``check_chain`` over the records'
        canonical bytes from the API, and over folds: passed rounds compacted past the hot
        window), none an integrity failure. Returns how many records were checked."""
        checked = 0
        for agent_id in self.active:
            after = max(baseline.get(agent_id, 1) - 1, 0)
            items = self._rounds(agent_id, after_seq=after)
            assert items, f"{agent_id}: no records after seq {after}"
            links = [self._link(agent_id, item) for item in items]
            anchor = bytes.fromhex(str(items[0]["prev"]))
            report = check_chain(agent_id, links, anchor=anchor)
            assert report.intact, (agent_id, report.breaks)
            if after:
                assert report.first_seq <= after + 1, f"{agent_id}: records missing"
            outcomes: set[str] = set()
            for item in items:
                if item.get("kind") == "fold":
                    outcomes.update(str(o) for o in item["outcomes"])
                else:
                    outcomes.add(str(item["outcome"]))
            assert "integrity_failure" not in outcomes, (agent_id, outcomes)
            checked += report.last_seq - report.first_seq + 1
        return checked

    def _link(self, agent_id: str, item: dict[str, Any]) -> RecordLink | FoldLink:
        if item.get("kind") == "fold":
            return FoldLink(
                first_seq=int(item["first_seq"]),
                last_seq=int(item["last_seq"]),
                prev=bytes.fromhex(str(item["prev"])),
                head=bytes.fromhex(str(item["head"])),
            )
        return RecordLink(canonical=self._canonical(agent_id, item))

    def check_no_false_failure(self) -> None:
        """No agent ever failed: no event to ``failed`` (what revokes) and no webhook sent."""
        for agent_id in self.active:
            events = self.verifier.events(agent_id)
            failed = [e for e in events if e["to_state"] == "failed"]
            assert not failed, (agent_id, failed)
        assert self.webhooks.received == [], self.webhooks.received

    def _last_seq(self, agent_id: str) -> int:
        items = self._rounds(agent_id)
        if not items:
            return 0
        last = items[-1]
        return int(last["last_seq"] if last.get("kind") == "fold" else last["seq"])

    def _rounds(self, agent_id: str, after_seq: int = 0) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        cursor: int | None = after_seq
        while cursor is not None:
            page = self.verifier.get(
                f"/v1/agents/{agent_id}/rounds", params={"after_seq": cursor, "limit": 1000}
            ).json()
            found.extend(page["items"])
            cursor = page["next_after_seq"]
        return found

    def _canonical(self, agent_id: str, item: dict[str, object]) -> bytes:
        answer = self.verifier.get(f"/v1/agents/{agent_id}/rounds/{item['round_id']}")
        answer.raise_for_status()
        return base64.b64decode(answer.json()["canonical"])


@contextmanager
def fault_stack(
    work: Path,
    *,
    database: str,
    database_url: str,
    registrar_database_url: str,
    agents: int,
    spare: int = 0,
    extra_trust: Sequence[Path] = (),
    redis_settings: Mapping[str, object] | None = None,
    extra_settings: Mapping[str, object] | None = None,
) -> Iterator[FaultStack]:
    """Start everything; ``agents`` simulated agents admitted and attested, ``spare`` more
    enrolled at the registrar only. ``redis_settings``: how the verifier reaches a Redis the
    caller runs (Sentinel); by default the stack starts its own redis-server.
    ``extra_settings``: any other settings (the cadence, ``verifier_id``)."""
    ca = make_ca()
    trust_dir = trust_dir_with(work / "ek-ca", extra_trust)
    (trust_dir / "sim-ca.pem").write_bytes(ca.pem)
    sims = make_simulators(agents + spare, ca, prefix=f"{database[:2]}{work.name[-4:]}")
    tls = fleet_tls(work / "tls")
    with ExitStack() as stack:
        redis_server = None
        redis_url = "redis://127.0.0.1:6379/0"  # with Sentinel only its database number counts
        if redis_settings is None:
            redis_server = RedisServer(work)
            redis_server.start()
            stack.callback(redis_server.stop)
            redis_url = redis_server.url
        registrar = stack.enter_context(
            running_registrar(work, trust_dir, database_url=registrar_database_url)
        )
        server = stack.enter_context(serve_fleet(sims, ssl_context=tls.server_context))
        webhooks = _webhook_receiver()
        stack.callback(webhooks.served.stop)
        enrol_fleet(registrar.url, sims, server, tls_certificate=tls.server_certificate_der)
        settings = verifier_settings(
            work, redis_url, registrar, tls_dir=work / "tls" / "verifier",
            database_url=database_url, verifier_port=free_port(),
            webhook_urls=(webhooks.served.url + "/hook",),
            webhook_secret=secrets.token_urlsafe(32),  # webhooks are always signed
            **(redis_settings or {}), **(extra_settings or {}),
        )  # fmt: skip
        admin = issue_api_key(database_url, Role.ADMIN, "faults-admin")  # migrates first
        env = settings_environment(settings)
        url = f"http://127.0.0.1:{settings.verifier_port}"
        api = verifier_api(env, work, settings.verifier_port)
        worker = verifier_celery("worker", ["worker", "--concurrency", "2"], env, work)
        beat = verifier_celery("beat", ["beat"], env, work)
        for process in (api, worker, beat):
            process.start()
            stack.callback(process.stop)
        verifier = RunningVerifier(
            url=url, settings=settings, client_ca=tls.client.ca_cert, api_key=admin
        )
        response = verifier.put_policy(POLICY, policy_document(sims[0]))
        assert response.status_code == 200, response.text
        running = FaultStack(
            database=database,
            database_url=database_url,
            workdir=work,
            redis_server=redis_server,
            registrar=registrar,
            api=api,
            worker=worker,
            beat=beat,
            verifier=verifier,
            server=server,
            sims={sim.agent_id: sim for sim in sims},
            webhooks=webhooks,
        )
        for sim in sims[:agents]:
            running.admit(sim.agent_id)
        running.wait_all_attested(60)
        yield running


def admit_swtpm_node(stack: FaultStack, swtpm: SwtpmInstance, work: Path, agent_id: str) -> Node:
    """A real agent on ``swtpm`` (``swtpm_agent.start_node``: its IMA log extended into PCR 10,
    its API over mTLS), enrolled at the stack's registrar, admitted under ``SWTPM_POLICY`` and
    attested."""
    document = swtpm_node_policy(sha256_of(SWTPM_ALLOWED))
    assert stack.verifier.put_policy(SWTPM_POLICY, document).status_code == 200
    node = start_node(
        swtpm,
        work,
        agent_id,
        client_ca=stack.verifier.client_ca,
        registrar=stack.registrar,
        measured=sha256_of(SWTPM_ALLOWED),
    )
    stack.admit(agent_id, SWTPM_POLICY)
    stack.wait_all_attested(30)
    return node


class Outage:
    """Times a fault: ``with Outage() as outage: …`` (``outage.ended`` is wall-clock UTC)."""

    def __init__(self) -> None:
        self.started = dt.datetime.now(dt.UTC)
        self.ended = self.started
        self._monotonic = time.monotonic()
        self.seconds = 0.0

    def __enter__(self) -> Outage:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.ended = dt.datetime.now(dt.UTC)
        self.seconds = time.monotonic() - self._monotonic
