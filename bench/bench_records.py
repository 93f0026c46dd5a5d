"""Evidence records: bytes per agent-day at the defaults, bytes per full round, and the worker CPU
recording adds to a round (recording on vs off, side by side in one run).

    .venv/bin/python bench/bench_records.py [--agents 4] [--rounds 600]

**Bytes.** One simulated day per agent at the default cadence (a round every 2 s = 43,200
rounds), committed through the real ``VerdictStore`` into a real SQLite file, with the default
retention (a round kept in full every 5 minutes, every other one folded after the 1 h hot
window). Each round carries what a geofenced node sends: a genuine-format quote over 10 sha256
PCRs (software TPM, the agent's own evidence code), a 21-line IMA log at boot (new lines only in
later rounds) and one signed location fix (a real NaviLock NMEA fix, ~0.8 KB of evidence). Times
come from a simulated clock, so a day takes about a minute. Reported: the bytes the records and
folds take per agent-day once folded, the hot window's fixed extra, and bytes per full record.

**CPU.** The same rounds through ``RoundRunner`` (real Redis, the simulated agents in-process):
once with the production group committer into SQLite, once with a committer that records
nothing, in alternation. The simulated agents' own CPU (signing quotes) is measured separately
and taken off both, so the figures are the verifier's share.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from allowlists.ima.policy import RuntimePolicy
from geoattest.db import make_engine, session_factory
from geoattest.wire import EvidenceRequest
from geofence import LocationEvidence, encode_evidence
from geofence.epochs import fixes_from_lines
from geofence.evidence import SourceKind
from geofence.nmea import split_lines
from tests.paths import vector
from tests.support.agent_simulator import AgentSimulator
from tests.support.redis_server import running_redis
from tests.support.runner_stack import RunnerStack, runner_stack
from verifier.core.evidence import parse_evidence
from verifier.core.policy import AttestationPolicy
from verifier.core.record import GENESIS, encode_record
from verifier.core.record_types import EvidenceRecord
from verifier.core.round import verify_round
from verifier.core.round_record import RecordOrigin, round_record
from verifier.core.round_types import RoundMemory
from verifier.core.states import AgentState, Outcome, next_state
from verifier.engine.committer import Committer
from verifier.engine.round_target import RoundTarget
from verifier.engine.runner import RoundRunner
from verifier.storage.group_commit import GroupCommitter
from verifier.storage.records import RecordStore
from verifier.storage.verdicts import CommitResult, Committed, VerdictDraft, VerdictStore

DAY_ROUNDS = 43_200
INTERVAL = dt.timedelta(seconds=2)
SAMPLE = dt.timedelta(minutes=5)
HOT_WINDOW = dt.timedelta(hours=1)
BATCH = 200  # rounds per commit transaction (what group commit does under load)


def _real_fix_evidence(nonce: bytes) -> bytes:
    lines = split_lines(vector("nmea/nl2008u.log").read_bytes())
    fixes, _ = fixes_from_lines(lines)
    fix = next(f for f in fixes if f.horizontal_accuracy_m is not None and f.signals)
    return encode_evidence(LocationEvidence.from_fix(fix, nonce=nonce, source=SourceKind.SERIAL))


def _boot_log_policy(sim: AgentSimulator, policy: AttestationPolicy) -> AttestationPolicy:
    """``policy`` allowing every line of ``sim``'s log (its 21-line boot)."""
    digests: dict[str, set[str]] = {}
    for line in sim.ima.lines:
        _, _, _, digest, path = line.split(" ", 4)
        digests.setdefault(path, set()).add(digest)
    runtime = RuntimePolicy(digests={path: frozenset(d) for path, d in digests.items()})
    return replace(policy, runtime=runtime)


def day_of_records(
    sim: AgentSimulator,
    policy: AttestationPolicy,
    start: dt.datetime,
    fix: bytes | None,
    rounds: int = DAY_ROUNDS,
) -> Iterator[EvidenceRecord]:
    """The record drafts of one agent-day (seq and prev are filled in when committed or laid
    down): real evidence, judged, with a location fix attached unless ``fix`` is None."""
    memory = RoundMemory()
    for n in range(rounds):
        nonce = os.urandom(32)
        request = EvidenceRequest(
            nonce=nonce.hex(),
            pcrs=policy.pcr_selection(),
            ima_offset=memory.ima_offset_for(policy.ima_banks),
        )
        evidence = parse_evidence(sim.respond(request), nonce)
        when = start + n * INTERVAL
        result = verify_round(evidence, ak=sim.tpm.ak, policy=policy, previous=memory, now=when)
        assert result.outcome is Outcome.PASSED, result.message
        if fix is not None:
            evidence = replace(evidence, location=fix, location_signature=os.urandom(72))
        yield round_record(
            agent_id=sim.agent_id,
            round_id=os.urandom(16).hex(),
            started_at=when,
            ended_at=when + dt.timedelta(milliseconds=40),
            judged_at=when,
            origin=RecordOrigin(verifier_id="bench"),
            policy=policy,
            ak=sim.tpm.ak,
            location_key=None,
            previous=memory,
            evidence=evidence,
            result=result,
        )
        memory = result.memory


def bytes_per_agent_day(stack: RunnerStack, agents: int) -> dict[str, float]:
    fix = _real_fix_evidence(os.urandom(32))
    engine = make_engine(f"sqlite:///{stack.database}")
    verdicts = VerdictStore(engine)
    records = RecordStore(session_factory(engine))
    start = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    fleet = stack.fleet()
    base = fleet.policies[next(iter(fleet.policies))]
    sims = list(stack.sims.values())[:agents]
    fence = 1
    stored: list[int] = []
    canonical: list[int] = []
    began = time.perf_counter()
    for sim in sims:
        for i in range(20):  # 20 more files measured at boot: a 21-line log
            sim.measure(f"/usr/lib/geoattest/boot-{i}.so", content=f"lib {i}".encode())
        policy = _boot_log_policy(sim, base)
        drafts: list[VerdictDraft] = []
        for record in day_of_records(sim, policy, start, fix):
            fence += 1
            drafts.append(
                VerdictDraft(
                    record=record,
                    fence=fence,
                    decide=lambda s: next_state(s, Outcome.PASSED),
                    passed=True,
                    sample_every=SAMPLE,
                )
            )
            if len(drafts) == BATCH:
                _commit(verdicts, drafts, stored, canonical)
                drafts = []
                records.fold(now=record.ended_at, hot_window=HOT_WINDOW)
        _commit(verdicts, drafts, stored, canonical)
    elapsed = time.perf_counter() - began
    ids = [sim.agent_id for sim in sims]
    end = start + DAY_ROUNDS * INTERVAL
    with_hot = records.bytes_stored(ids)
    # The chain's last run folds once the agent looks stopped (two hot windows): all of it.
    records.fold(now=end + 2 * HOT_WINDOW + dt.timedelta(seconds=1), hot_window=HOT_WINDOW)
    folded = records.bytes_stored(ids)
    engine.dispose()
    return {
        "agents": agents,
        "seconds": elapsed,
        "bytes_per_agent_day": folded / agents,
        "hot_window_extra_per_agent": (with_hot - folded) / agents,
        "full_record_stored_p50": statistics.median(stored),
        "full_record_canonical_p50": statistics.median(canonical),
        "kept_per_agent_day": len(stored) / agents,
    }


def _commit(
    verdicts: VerdictStore, drafts: list[VerdictDraft], stored: list[int], canonical: list[int]
) -> None:
    for result in verdicts.commit(drafts):
        assert isinstance(result, Committed), result
        if result.kept:
            encoded = encode_record(result.record)
            canonical.append(len(encoded))
            stored.append(len(zlib.compress(encoded, 6)))


def _unrecorded(draft: VerdictDraft) -> Committed:
    record = replace(draft.record, seq=1, prev=GENESIS, to_state=AgentState.ATTESTED)
    return Committed(record=record, digest=GENESIS, kept=False, event=None)


class NullCommitter:
    """Records nothing, on the round's own thread: what a round costs without its evidence
    record on the cheapest path (nothing handed to another thread)."""

    def commit(self, draft: VerdictDraft, *, timeout: float) -> CommitResult:
        return _unrecorded(draft)

    def submit(
        self,
        draft: VerdictDraft,
        then: Callable[[CommitResult | BaseException], None],
        *,
        timeout: float,
    ) -> None:
        then(_unrecorded(draft))

    def wait_idle(self, timeout: float) -> bool:
        return True


class NullStore:
    """A verdict store that records nothing, behind the production group committer: the same
    engine as recording (hand-off to the writer, finishing there), less the recording."""

    def commit(self, drafts: Sequence[VerdictDraft]) -> list[CommitResult]:
        return [_unrecorded(draft) for draft in drafts]


@dataclass(frozen=True)
class Mode:
    """One way of running the rounds: its runner, and whether rounds wait for their commit
    (``run``, the pre-ADR 23 worker) or hand it on (``start``, ``run_batch`` today)."""

    runner: RoundRunner
    committer: NullCommitter | GroupCommitter[VerdictDraft, CommitResult]
    waits: bool

    def run(self, pool: ThreadPoolExecutor, batch: list[RoundTarget]) -> None:
        if self.waits:
            list(pool.map(self.runner.run, batch))
            return
        list(pool.map(self.runner.start, batch))
        if not self.committer.wait_idle(60):
            raise RuntimeError("rounds handed on were not finished within 60 s")


MODES = {
    "recording": "recording, rounds hand their verdicts on (start: the worker's path)",
    "recording_waiting": "recording, rounds wait for their commit (run: before ADR 23)",
    "not_recording": "not recording, nothing handed on (NullCommitter inline): the baseline",
    "not_recording_handed_on": "not recording, handed on to the writer (NullStore)",
}


def modes_of(stack: RunnerStack) -> dict[str, Mode]:
    committer = stack.committer
    null_group: GroupCommitter[VerdictDraft, CommitResult] = GroupCommitter(NullStore())
    null = NullCommitter()
    return {
        "recording": Mode(stack.runner, committer, waits=False),
        "recording_waiting": Mode(stack.runner, committer, waits=True),
        "not_recording": Mode(replace_committer(stack, null), null, waits=True),
        "not_recording_handed_on": Mode(
            replace_committer(stack, null_group), null_group, waits=False
        ),
    }


def cpu_per_round(stack: RunnerStack, rounds: int) -> dict[str, float]:
    """Rounds as a worker process runs them: batches of 25 on 16 threads (``run_batch``), each
    mode of ``MODES`` in turn, five times; the best of each, the simulator's CPU taken off."""
    targets = [stack.target(agent_id) for agent_id in stack.sims]
    pool = ThreadPoolExecutor(16)
    list(pool.map(stack.runner.run, targets))  # first rounds: registered -> attested
    modes = modes_of(stack)
    spent: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(5):
        for name, mode in modes.items():
            began = time.process_time()
            for start in range(0, rounds, len(targets)):
                mode.run(pool, targets[: min(len(targets), rounds - start)])
            spent[name].append((time.process_time() - began) / rounds)
    pool.shutdown()
    agent_cost = _simulator_cpu(stack, rounds)
    best = {name: (min(values) - agent_cost) * 1000 for name, values in spent.items()}
    return {f"{name}_ms": value for name, value in best.items()} | {
        "simulated_agent_cpu_ms": agent_cost * 1000
    }


def replace_committer(stack: RunnerStack, committer: Committer) -> RoundRunner:
    runner = stack.runner
    return RoundRunner(
        hot=runner._hot,  # the same parts, another committer
        source=runner._source,
        committer=committer,
        publish=lambda _committed: None,
        cadence=runner._cadence,
        origin=runner._origin,
    )


def _simulator_cpu(stack: RunnerStack, rounds: int) -> float:
    """CPU of the simulated agents answering (what real nodes spend, not the verifier)."""
    sims = list(stack.sims.values())
    target = stack.target(sims[0].agent_id)
    request = EvidenceRequest(nonce="ab" * 32, pcrs=target.policy.pcr_selection(), ima_offset=21)
    body = request.model_dump_json(exclude_defaults=True).encode()
    best = []
    for _ in range(5):
        began = time.process_time()
        for n in range(rounds):
            sims[n % len(sims)].answer(body)
        best.append((time.process_time() - began) / rounds)
    return min(best)


@contextmanager
def _stack(workdir: Path, agents: int) -> Iterator[RunnerStack]:
    with running_redis(workdir) as url, runner_stack(workdir, url, agents=agents) as stack:
        yield stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=25, help="agents (one batch of rounds)")
    parser.add_argument("--day-agents", type=int, default=2, help="agent-days of records")
    parser.add_argument("--rounds", type=int, default=600, help="rounds per CPU sample")
    parser.add_argument("--cpu-only", action="store_true", help="skip the agent-day of bytes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "cpu").mkdir()
        (work / "bytes").mkdir()
        with _stack(work / "cpu", args.agents) as stack:
            cpu = cpu_per_round(stack, args.rounds)
        if args.cpu_only:
            _print_cpu(cpu)
            return
        with _stack(work / "bytes", args.day_agents) as stack:
            size = bytes_per_agent_day(stack, args.day_agents)
    _print_size(size)
    _print_cpu(cpu)


def _print_size(size: dict[str, float]) -> None:
    print(f"records of {size['agents']:.0f} agent-days written in {size['seconds']:.0f} s")
    print(f"bytes per agent-day (folded, at the defaults): {size['bytes_per_agent_day']:,.0f}")
    extra = size["hot_window_extra_per_agent"]
    print(f"hot window extra per agent (fixed, 1 h of full rounds): {extra:,.0f}")
    print(
        f"full records kept per agent-day: {size['kept_per_agent_day']:.0f}; each "
        f"{size['full_record_canonical_p50']:,.0f} bytes canonical, "
        f"{size['full_record_stored_p50']:,.0f} stored (zlib)"
    )


def _print_cpu(cpu: dict[str, float]) -> None:
    agent = cpu["simulated_agent_cpu_ms"]
    print(f"verifier CPU per round (the simulated agent's {agent:.3f} ms taken off):")
    for name, label in MODES.items():
        print(f"  {cpu[name + '_ms']:.3f} ms  {label}")
    for name, against in (
        ("recording", "not_recording"),
        ("recording", "not_recording_handed_on"),
        ("recording_waiting", "not_recording"),
    ):
        extra = cpu[name + "_ms"] - cpu[against + "_ms"]
        print(f"recording adds {extra / cpu[against + '_ms'] * 100:5.1f} % ({name} vs {against})")


if __name__ == "__main__":
    main()
