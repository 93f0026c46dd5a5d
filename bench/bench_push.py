"""Push-mode benchmark (ADR 19): N simulated push agents post to the real push listener.

    .venv/bin/python bench/bench_push.py --agents 200 --duration 30
    .venv/bin/python bench/bench_push.py --sweep     # N = 100, 200, 400, ... until >1 % late

Everything runs for real on loopback: redis-server; the registrar (a thread of this process,
idle once agents are enrolled); the verifier API (``geoattest verifier serve``, for adding the
agents); and ``geoattest verifier push-serve``, the process measured. Each simulated agent
(``AgentSimulator``: software keys making genuine TPMS_ATTEST quotes over a real ima-ng log)
has its own self-signed certificate, registered at enrolment, and keeps one kept-alive mTLS
connection; every ``--interval`` seconds it asks for a challenge, quotes over it and posts.

The driver (this process) runs the agents on ``--threads`` threads. A push round is late when
two passed posts of one agent are more than 1.5 x interval apart (as the pull benchmark's gaps).
The listener's CPU per push round (from /proc: challenge, handshake share, parse, verify,
record, Redis) is set against one raw ECDSA P-256 verification measured in the same run, the
physical floor of a round. The simulators' quoting is the fleet's cost, not the verifier's; it
runs in this process, so on this 2-core box it competes with the listener for the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from agent.enrolment import ApiEndpoint, enrol
from bench._fleet_process import BASELINE_FILES
from bench._fleet_stats import cpu_by_label, cpu_snapshot, load_average, percentile
from bench._service_counters import service_counters
from bench._verifier_settings import add_agents, ek_trust_dir, verifier_settings
from geoattest.access.keys import Role
from geoattest.dev.procs import GEOATTEST, free_ports, http_ok, managed_process, port_accepts
from geoattest.registrar_client import RegistrarClient
from geoattest.settings import Settings
from geoattest.tls_material import self_signed_server_certificate, write_certified_key
from geoattest.wire_push import PushChallengeView, PushEvidencePost, PushVerdictView
from tests.support.access import bearer, issue_api_key
from tests.support.agent_simulator import AgentSimulator, policy_document
from tests.support.redis_server import running_redis
from tests.support.registrar_server import running_registrar
from tests.support.software_pki import SoftwareCa, make_ca
from tests.support.verifier_stack import settings_environment

POLICY = "push-fleet"
SWEEP = (100, 200, 400, 600, 800, 1000, 1500, 2000)
MAX_LATE = 0.01
LISTENER = "verifier push-serve"


@dataclass(slots=True)
class PushAgent:
    sim: AgentSimulator
    session: requests.Session
    verify: str  # per request: a session's ``verify`` loses to REQUESTS_CA_BUNDLE
    passed_at: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    refused: int = 0


@dataclass(slots=True)
class Stack:
    settings: Settings
    api_url: str
    push_url: str
    api_key: str
    registrar_url: str
    ca: SoftwareCa
    work: Path
    pids: dict[str, int]
    redis_url: str
    agents: list[PushAgent] = field(default_factory=list)


@contextmanager
def push_stack(work: Path, *, interval: float, processes: int = 1) -> Iterator[Stack]:
    ca = make_ca()
    trust = ek_trust_dir(work, ca)
    with running_redis(work) as redis_url, running_registrar(work, trust) as registrar:
        port, push_port = free_ports(2)
        settings = verifier_settings(
            work,
            registrar,
            redis_url=redis_url,
            database_url=f"sqlite:///{work / 'verifier.sqlite'}",
            port=port,
            interval=interval,
            push_port=push_port,
            push_processes=processes,
            push_challenges_per_minute=max(30, int(120 / interval)),
        )
        env = settings_environment(settings)
        api_url = f"http://127.0.0.1:{port}"
        with managed_process(
            "verifier API", [*GEOATTEST, "verifier", "serve"], log_path=work / "api.log",
            ready=http_ok(f"{api_url}/v1/healthz"), env=env,
        ) as api, managed_process(
            LISTENER, [*GEOATTEST, "verifier", "push-serve"], log_path=work / "push.log",
            ready=lambda: port_accepts(push_port), env=env,
        ) as listener:  # fmt: skip
            yield Stack(
                settings=settings,
                api_url=api_url,
                push_url=f"https://127.0.0.1:{push_port}",
                api_key=issue_api_key(settings.database_url, Role.ADMIN, "bench"),
                registrar_url=registrar.url,
                ca=ca,
                work=work,
                pids={LISTENER: listener.pid, "verifier API": api.pid},
                redis_url=redis_url,
            )


def grow(stack: Stack, total: int) -> None:
    """Enrol and add push agents until there are ``total``."""
    registrar = RegistrarClient(stack.registrar_url)
    client_ca = stack.settings.verifier_tls_dir / "client-ca.pem"
    try:
        new: list[PushAgent] = []
        for index in range(len(stack.agents), total):
            agent_id = f"push-{index:05d}"
            sim = AgentSimulator(agent_id, stack.ca)
            for path, content in BASELINE_FILES.items():
                sim.measure(path, content=content)
            identity = self_signed_server_certificate(agent_id, ["127.0.0.1"])
            cert, key = (
                stack.work / "certs" / f"{agent_id}.pem",
                stack.work / "certs" / f"{agent_id}-key.pem",
            )
            cert.parent.mkdir(exist_ok=True)
            write_certified_key(identity, cert, key)
            endpoint = ApiEndpoint(
                url="https://127.0.0.1:1", tls_certificate=identity.certificate_der
            )
            enrol(sim.tpm, registrar, agent_id, endpoint=_Fixed(endpoint))
            session = requests.Session()
            session.cert = (str(cert), str(key))
            new.append(PushAgent(sim=sim, session=session, verify=str(client_ca)))
        if not stack.agents:
            policy = policy_document(new[0].sim)
            requests.put(f"{stack.api_url}/v1/policies/{POLICY}", json=policy,
                         headers=bearer(stack.api_key), timeout=30).raise_for_status()  # fmt: skip
        ids = [agent.sim.agent_id for agent in new]
        add_agents(stack.api_url, stack.api_key, ids, policy=POLICY, mode="push")
        stack.agents.extend(new)
    finally:
        registrar.close()


def _post(stack: Stack, agent: PushAgent, path: str, body: str) -> bytes:
    answer = agent.session.post(
        stack.push_url + path,
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
        verify=agent.verify,
    )
    answer.raise_for_status()
    return answer.content


@dataclass(frozen=True, slots=True)
class _Fixed:
    endpoint: ApiEndpoint

    def __call__(self, _agent_id: str) -> ApiEndpoint:
        return self.endpoint


def push_round(stack: Stack, agent: PushAgent) -> PushVerdictView:
    """Challenge, quote, post: one push round of ``agent``."""
    started = time.perf_counter()
    asked = _post(stack, agent, "/v1/push/challenge", json.dumps({"agent_id": agent.sim.agent_id}))
    challenge = PushChallengeView.model_validate_json(asked)
    post = PushEvidencePost(
        agent_id=agent.sim.agent_id,
        nonce=challenge.request.nonce,
        evidence=agent.sim.respond(challenge.request),
    )
    judged = _post(stack, agent, "/v1/push/evidence", post.model_dump_json(exclude_defaults=True))
    agent.latencies.append(time.perf_counter() - started)
    return PushVerdictView.model_validate_json(judged)


def drive(stack: Stack, interval: float, until: float, threads: int) -> None:
    """Every agent pushes once per ``interval`` (fixed rate, phases spread) until ``until``."""
    count = len(stack.agents)
    start = time.time()
    due = {i: start + interval * i / count for i in range(count)}
    lock = threading.Lock()

    def next_agent() -> int | None:
        with lock:
            index = min(due, key=due.__getitem__)
            when = due[index]
            if when >= until:
                return None
            due[index] = max(when + interval, time.time())  # a late round does not pile up
        time.sleep(max(0.0, when - time.time()))
        return index

    def work() -> None:
        while (index := next_agent()) is not None:
            agent = stack.agents[index]
            try:
                verdict = push_round(stack, agent)
            except (requests.RequestException, ValueError):
                agent.refused += 1
                continue
            if verdict.outcome == "passed":
                agent.passed_at.append(time.time())
            else:
                agent.refused += 1

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


@dataclass(frozen=True, slots=True)
class StepResult:
    agents: int
    seconds: float
    rounds: int
    refused: int
    late: int
    gaps: int
    latency_p50: float
    latency_p99: float
    cpu: dict[str, float]
    listener_cpu_per_round: float
    ecdsa_verify: float
    load: str
    services: str  # Redis commands (and database writes) per round


def raw_ecdsa_verify_seconds(iterations: int = 2000) -> float:
    """One ECDSA P-256 verification (SHA-256), best of three runs: the floor of a round."""
    key = ec.generate_private_key(ec.SECP256R1())
    message = os.urandom(150)  # about a TPMS_ATTEST
    signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
    public = key.public_key()
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(iterations):
            public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        best = min(best, (time.perf_counter() - started) / iterations)
    return best


def run_step(stack: Stack, total: int, args: argparse.Namespace) -> StepResult:
    grow(stack, total)
    for agent in stack.agents:  # first rounds (whole IMA logs) are not the steady state
        push_round(stack, agent)
    for agent in stack.agents:
        agent.passed_at.clear()
        agent.latencies.clear()
        agent.refused = 0
    ecdsa = raw_ecdsa_verify_seconds()
    before = cpu_snapshot(stack.pids)
    counters_before = service_counters(stack.redis_url, stack.settings.database_url)
    started = time.time()
    drive(stack, args.interval, started + args.duration, args.threads)
    seconds = time.time() - started
    counters_after = service_counters(stack.redis_url, stack.settings.database_url)
    cpu = cpu_by_label(before, cpu_snapshot(stack.pids), seconds)
    rounds = sum(len(a.passed_at) for a in stack.agents)
    gaps = [
        b - a
        for agent in stack.agents
        for a, b in zip(agent.passed_at, agent.passed_at[1:], strict=False)
    ]
    latencies = sorted(x for agent in stack.agents for x in agent.latencies)
    listener_cpu = cpu.get(LISTENER, 0.0) * seconds / max(rounds, 1)
    return StepResult(
        agents=total,
        seconds=seconds,
        rounds=rounds,
        refused=sum(a.refused for a in stack.agents),
        late=sum(g > 1.5 * args.interval for g in gaps),
        gaps=len(gaps),
        latency_p50=percentile(latencies, 0.5),
        latency_p99=percentile(latencies, 0.99),
        cpu=cpu,
        listener_cpu_per_round=listener_cpu,
        ecdsa_verify=ecdsa,
        load=load_average(),
        services=counters_before.per_round(counters_after, rounds),
    )


def report(step: StepResult, interval: float) -> str:
    late = step.late / step.gaps if step.gaps else 0.0
    return (
        f"N={step.agents} push: {step.rounds} passed rounds in {step.seconds:.1f} s = "
        f"{step.rounds / step.seconds:.0f}/s (nominal {step.agents / interval:.0f}/s), "
        f"{step.refused} not passed; late {step.late}/{step.gaps} = {100 * late:.2f} %; "
        f"challenge+quote+post p50 {1000 * step.latency_p50:.1f} ms, "
        f"p99 {1000 * step.latency_p99:.1f} ms\n"
        f"  listener CPU per push round {1000 * step.listener_cpu_per_round:.2f} ms = "
        f"{step.listener_cpu_per_round / step.ecdsa_verify:.1f}x one raw ECDSA P-256 verify "
        f"({1000 * step.ecdsa_verify:.3f} ms, same run); CPU (cores): "
        + ", ".join(f"{label} {cores:.2f}" for label, cores in sorted(step.cpu.items()))
        + f"; load {step.load}\n  {step.services}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--duration", type=float, default=30.0, help="measurement window, s")
    parser.add_argument("--interval", type=float, default=2.0, help="push interval, s")
    parser.add_argument("--threads", type=int, default=16, help="driver threads")
    parser.add_argument("--processes", type=int, default=1, help="push listener processes")
    parser.add_argument("--sweep", action="store_true", help=f"N over {SWEEP} until >1%% late")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="geoattest-bench-push-"))
    steps = SWEEP if args.sweep else (args.agents,)
    try:
        with push_stack(work, interval=args.interval, processes=args.processes) as stack:
            for total in steps:
                step = run_step(stack, total, args)
                print(report(step, args.interval), flush=True)
                if step.gaps and step.late / step.gaps > MAX_LATE:
                    break
    finally:
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
