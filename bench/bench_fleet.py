"""Fleet benchmark: N simulated agents polled over mTLS by the real Celery verifier.

    .venv/bin/python bench/bench_fleet.py --agents 1000 --duration 60 [--workers 2]
    .venv/bin/python bench/bench_fleet.py --sweep        # N = 500, 1000, 1500, ... until >1 % late

Everything runs for real on loopback, each part in its own process as in production:
redis-server; the registrar (a thread of this process, idle once agents are enrolled); the fleet
(``bench/_fleet_process.py``: N ``AgentSimulator``s behind one HTTPS port with mTLS, software keys
making genuine TPMS_ATTEST quotes over real ima-ng logs); the verifier API
(``geoattest verifier serve``) and the Celery worker with its embedded beat
(``geoattest verifier worker --beat --concurrency K``), SQLite and Redis as configured.

For each N the agents are enrolled with the registrar and added to the verifier with one policy;
once all are ``attested`` and two more intervals passed, the window opens: every evidence fetch is
timestamped by the fleet, and late rounds are counted as ``bench/_fleet_stats.py`` defines (gap
between two rounds of an agent > 1.5 x interval). CPU per process comes from /proc. Then K agents
are tampered with (each runs a file its policy does not allow), one every ``--tamper-every``
seconds while the whole fleet keeps being polled; Redis is polled every 20 ms for their state, and
tamper-to-``failed`` latency is the time from the tamper to the first poll that sees ``failed``.
Tampered agents are then cleaned (rebooted) and re-admitted, so the next step has N agents again.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
import requests
from cryptography.hazmat.primitives import serialization

from bench._fleet_process import FleetProcess, FleetSpec
from bench._fleet_stats import (
    RoundFigures,
    cpu_by_label,
    cpu_snapshot,
    load_average,
    machine_busy,
    percentile,
    round_figures,
)
from bench._service_counters import service_counters
from bench._verifier_settings import add_agents, ek_trust_dir, verifier_database, verifier_settings
from geoattest.access.keys import Role
from geoattest.dev.procs import GEOATTEST, free_port, http_ok, managed_process
from geoattest.settings import Settings
from tests.support.access import bearer, issue_api_key
from tests.support.redis_server import running_redis
from tests.support.registrar_server import running_registrar
from tests.support.software_pki import make_ca
from tests.support.verifier_stack import settings_environment
from verifier.core.states import AgentState
from verifier.storage.hot_state import HotState

POLICY = "fleet"
SWEEP = (500, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 5000, 6000, 8000, 10000)
MAX_LATE = 0.01
BENCH = "bench (registrar, monitor)"


@dataclass(slots=True)
class Stack:
    settings: Settings
    fleet: FleetProcess
    api_url: str
    api_key: str  # the verifier's admin key for this run
    hot: HotState
    pids: dict[str, int]
    agents: list[str]
    redis_url: str


@dataclass(frozen=True, slots=True)
class StepResult:
    agents: int
    figures: RoundFigures
    cpu: dict[str, float]
    machine_cores: float
    load_before: str
    load_after: str
    tamper_latencies: list[float]
    tamper_missed: int
    setup_seconds: dict[str, float]
    services: str  # Redis commands and database writes per round


def _child_pid(parent: int, name: str) -> int:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == parent and name in stat:
                return int(entry)
    raise RuntimeError(f"no {name} child process")


@contextmanager
def fleet_stack(
    work: Path, *, workers: int, interval: float, database: str = "sqlite"
) -> Iterator[Stack]:
    ca = make_ca()
    trust = ek_trust_dir(work, ca)
    key_pem = ca.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with (
        running_redis(work) as redis_url,
        running_registrar(work, trust) as registrar,
        verifier_database(work, database) as database_url,
    ):
        fleet = FleetProcess(FleetSpec(key_pem, ca.pem, work / "tls", registrar.url))
        try:
            port = free_port()
            settings = verifier_settings(
                work,
                registrar,
                redis_url=redis_url,
                database_url=database_url,
                port=port,
                interval=interval,
            )
            env = settings_environment(settings)
            api_url = f"http://127.0.0.1:{port}"
            api_argv = [*GEOATTEST, "verifier", "serve"]
            with managed_process(
                "verifier API", api_argv, log_path=work / "api.log",
                ready=http_ok(f"{api_url}/v1/healthz"), env=env,
            ) as api:  # fmt: skip
                worker_argv = [*GEOATTEST, "verifier", "worker", "--beat",
                               "--concurrency", str(workers)]  # fmt: skip
                worker_log = work / "worker.log"
                with managed_process(
                    "verifier worker", worker_argv, log_path=worker_log,
                    ready=lambda: b"ready." in worker_log.read_bytes(), env=env,
                ) as worker:  # fmt: skip
                    client = redis.Redis.from_url(redis_url)
                    yield Stack(
                        settings=settings,
                        fleet=fleet,
                        api_url=api_url,
                        api_key=issue_api_key(settings.database_url, Role.ADMIN, "bench"),
                        hot=HotState(client),
                        pids={
                            "fleet sim": fleet.pid,
                            "redis": _child_pid(os.getpid(), "redis-server"),
                            "verifier API": api.pid,
                            "celery worker+beat": worker.pid,
                            BENCH: os.getpid(),
                        },
                        agents=[],
                        redis_url=redis_url,
                    )
                    client.close()
        finally:
            fleet.stop()


def _states(stack: Stack, agent_ids: Sequence[str]) -> dict[str, AgentState]:
    statuses = stack.hot.load_many(agent_ids)
    return {agent_id: status.state for agent_id, status in statuses.items()}


def _wait_attested(stack: Stack, agent_ids: Sequence[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        states = _states(stack, agent_ids)
        waiting = [a for a in agent_ids if states.get(a) is not AgentState.ATTESTED]
        if not waiting:
            return
        if time.monotonic() > deadline:
            counts: dict[str, int] = {}
            for agent_id in waiting:
                state = states.get(agent_id)
                counts[str(state)] = counts.get(str(state), 0) + 1
            raise RuntimeError(
                f"{len(waiting)} agents not attested after {timeout:.0f} s: {counts}"
            )
        time.sleep(0.5)


def _tamper(stack: Stack, count: int, every: float) -> tuple[list[float], int]:
    """Tamper ``count`` agents spread over the fleet; (latencies to ``failed``, missed)."""
    step = max(1, len(stack.agents) // max(count, 1))
    victims = stack.agents[::step][:count]
    tampered: dict[str, float] = {}
    failed: dict[str, float] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set() or len(failed) < len(tampered):
            pending = [a for a in tampered if a not in failed]
            if pending:
                now = time.time()
                for agent_id, state in _states(stack, pending).items():
                    if state is AgentState.FAILED:
                        failed[agent_id] = now
            if done.is_set() and time.time() > max(tampered.values(), default=0) + 30:
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, name="tamper-watch")
    watcher.start()
    for agent_id in victims:
        tampered[agent_id] = stack.fleet.tamper(agent_id)
        time.sleep(every)
    done.set()
    watcher.join()
    latencies = sorted(failed[a] - tampered[a] for a in failed)
    stack.fleet.heal(victims)
    for agent_id in victims:
        response = requests.post(
            f"{stack.api_url}/v1/agents/{agent_id}/readmit",
            headers=bearer(stack.api_key),
            timeout=30,
        )
        if response.status_code != 200:
            raise RuntimeError(f"readmit {agent_id}: {response.status_code} {response.text}")
    return latencies, len(victims) - len(failed)


def run_step(stack: Stack, total: int, args: argparse.Namespace) -> StepResult:
    setup: dict[str, float] = {}
    started = time.perf_counter()
    new_ids, policy, setup["enrol"] = stack.fleet.grow(total)
    if not stack.agents:
        response = requests.put(
            f"{stack.api_url}/v1/policies/{POLICY}",
            json=policy,
            headers=bearer(stack.api_key),
            timeout=30,
        )
        response.raise_for_status()
    mark = time.perf_counter()
    add_agents(stack.api_url, stack.api_key, new_ids, policy=POLICY)
    setup["add"] = time.perf_counter() - mark
    stack.agents.extend(new_ids)
    mark = time.perf_counter()
    _wait_attested(stack, stack.agents, timeout=120 + total / 20)
    setup["attested"] = time.perf_counter() - mark
    time.sleep(2 * args.interval)
    setup["total"] = time.perf_counter() - started

    load_before = load_average()
    cpu_before, busy_before = cpu_snapshot(stack.pids, own_only=[BENCH]), machine_busy()
    counters_before = service_counters(stack.redis_url, stack.settings.database_url)
    start = stack.fleet.mark()
    time.sleep(args.duration)
    end = time.time()
    counters_after = service_counters(stack.redis_url, stack.settings.database_url)
    cpu_after, busy_after = cpu_snapshot(stack.pids, own_only=[BENCH]), machine_busy()
    load_after = load_average()
    times = stack.fleet.times()
    figures = round_figures(times, stack.agents, start, end, args.interval)
    cpu = cpu_by_label(cpu_before, cpu_after, end - start)
    cores = os.cpu_count() or 1
    machine = (busy_after[0] - busy_before[0]) / (busy_after[1] - busy_before[1]) * cores
    latencies: list[float] = []
    missed = 0
    if args.tamper:
        latencies, missed = _tamper(stack, args.tamper, args.tamper_every)
    return StepResult(
        agents=total,
        figures=figures,
        cpu=cpu,
        machine_cores=machine,
        load_before=load_before,
        load_after=load_after,
        tamper_latencies=latencies,
        tamper_missed=missed,
        setup_seconds=setup,
        services=counters_before.per_round(counters_after, figures.rounds),
    )


def report(step: StepResult, interval: float) -> str:
    f = step.figures
    lines = [
        f"N={step.agents}: {f.rounds} rounds in {f.seconds:.1f} s = {f.rounds_per_second:.0f}/s "
        f"(nominal {step.agents / interval:.0f}/s); late {f.late}/{f.gaps} = "
        f"{100 * f.late_fraction:.2f} %; gap p50 {f.gap_p50:.2f} s, p99 {f.gap_p99:.2f} s, "
        f"max {f.gap_max:.2f} s",
        "  CPU (cores): "
        + ", ".join(f"{label} {cores:.2f}" for label, cores in sorted(step.cpu.items()))
        + f"; whole machine {step.machine_cores:.2f} of {os.cpu_count()}",
        f"  {step.services}",
        f"  load average {step.load_before} -> {step.load_after}; setup "
        + ", ".join(f"{k} {v:.0f} s" for k, v in step.setup_seconds.items()),
    ]
    if step.tamper_latencies or step.tamper_missed:
        lat = step.tamper_latencies
        lines.append(
            f"  tamper-to-failed ({len(lat)} agents, {step.tamper_missed} missed): "
            f"p50 {percentile(lat, 0.5):.2f} s, p99 {percentile(lat, 0.99):.2f} s, "
            f"max {max(lat, default=math.nan):.2f} s"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=60.0, help="measurement window, s")
    parser.add_argument("--workers", type=int, default=6, help="Celery pool processes")
    parser.add_argument("--interval", type=float, default=2.0, help="round interval, s")
    parser.add_argument("--sweep", action="store_true", help=f"N over {SWEEP} until >1%% late")
    parser.add_argument("--steps", type=str, help="comma-separated N for --sweep")
    parser.add_argument("--tamper", type=int, default=50, help="agents tampered per step")
    parser.add_argument("--tamper-every", type=float, default=0.2, help="seconds between tampers")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument(
        "--database", choices=("sqlite", "postgresql"), default="sqlite",
        help="the verifier's database (postgresql: a throwaway cluster on a free port)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the registrar's request lines
    if args.sweep:
        steps = [int(n) for n in args.steps.split(",")] if args.steps else list(SWEEP)
        if args.duration == parser.get_default("duration"):
            args.duration = 30.0
    else:
        steps = [args.agents]
    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load {load_average()}, "
        f"workers {args.workers}, interval {args.interval} s, {args.database}, work dir {work}",
        flush=True,
    )
    results: list[StepResult] = []
    with fleet_stack(
        work, workers=args.workers, interval=args.interval, database=args.database
    ) as stack:
        for total in steps:
            step = run_step(stack, total, args)
            results.append(step)
            print(report(step, args.interval), flush=True)
            if step.figures.late_fraction > MAX_LATE:
                break
    held = [s.agents for s in results if s.figures.late_fraction <= MAX_LATE]
    print(f"largest N held (<= {100 * MAX_LATE:.0f} % late): {max(held, default=0)}")
    if args.json:
        args.json.write_text(json.dumps([_as_json(s) for s in results], indent=2))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _as_json(step: StepResult) -> dict[str, object]:
    f = step.figures
    return {
        "agents": step.agents,
        "rounds": f.rounds,
        "rounds_per_second": f.rounds_per_second,
        "late": f.late,
        "gaps": f.gaps,
        "late_fraction": f.late_fraction,
        "gap_p50": f.gap_p50,
        "gap_p99": f.gap_p99,
        "gap_max": f.gap_max,
        "cpu_cores": step.cpu,
        "machine_cores": step.machine_cores,
        "load": [step.load_before, step.load_after],
        "tamper_latencies": step.tamper_latencies,
        "tamper_missed": step.tamper_missed,
        "setup_seconds": step.setup_seconds,
        "services_per_round": step.services,
    }


if __name__ == "__main__":
    sys.exit(main())
