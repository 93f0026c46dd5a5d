"""Where the worker CPU of recording goes: the recording cost of a round split by phase.

    .venv/bin/python bench/bench_record_phases.py [--agents 25] [--rounds 3000]

The same rounds as ``bench_records --cpu-only`` (25 simulated agents, batches on 16 threads,
the worker's path, recording, alternated three times with the baseline that records nothing
inline; best of each): the total is the process CPU (``time.process_time``, every thread) with
recording less without. Each phase is the CPU its own thread spent in it (``time.thread_time``
around the call, summed over the best run's rounds and divided by them): the writer thread's
canonical encoding, digest, zlib, the driver SQL (chain read, steady update, record insert),
the transaction's begin and COMMIT, the transparency-log queue, and the rounds' finishing (hot
state, lock, publication: the baseline does that too, on the round's own thread); the round
threads' hand-off to the writer (``submit``). What is left of the total is spent outside any
of them: thread switches and the GIL of 17 threads (the round pool and the writer) where 16
ran before, and what finishing costs more on the writer than inline. The phases are timed by
wrapping the functions, which adds about a microsecond a call.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Connection, Engine

from bench.bench_records import _stack, modes_of
from verifier.storage import group_commit, verdicts

_spent: defaultdict[str, float] = defaultdict(float)
_groups: list[int] = []


def _timed(owner: Any, name: str, label: str) -> None:  # noqa: ANN401  # a module or a class
    inner: Callable[..., Any] = getattr(owner, name)

    def timed(*args: object, **kwargs: object) -> object:
        began = time.thread_time()
        try:
            return inner(*args, **kwargs)
        finally:
            _spent[label] += time.thread_time() - began

    setattr(owner, name, timed)


def _instrument() -> None:
    _timed(group_commit.GroupCommitter, "submit", "round threads: hand-off (submit)")
    _timed(group_commit.GroupCommitter, "_answer", "writer: finishing the rounds (then)")
    _timed(group_commit.GroupCommitter, "_commit", "writer: the whole group commit")
    _timed(verdicts, "encode_record", "writer: canonical encoding")
    _timed(verdicts, "record_digest", "writer: SHA-256 digest")
    _timed(zlib, "compress", "writer: zlib (kept records only)")
    _timed(verdicts, "read_chain", "writer: SQL chain read (driver)")
    _timed(verdicts, "steady_updates", "writer: SQL steady update (driver)")
    _timed(verdicts, "insert_records", "writer: SQL record insert (driver)")
    _timed(verdicts, "enqueue", "writer: transparency-log queue")
    _timed(Connection, "execute", "writer: SQLAlchemy Core statements (transitions)")
    real_begin = Engine.begin

    @contextmanager
    def begin(self: Engine) -> Iterator[Connection]:
        began = time.thread_time()
        with real_begin(self) as connection:
            _spent["writer: BEGIN and pool checkout"] += time.thread_time() - began
            yield connection
            began = time.thread_time()
        _spent["writer: COMMIT and pool return"] += time.thread_time() - began

    Engine.begin = begin  # type: ignore[method-assign]  # instrumentation of this process
    real_group = group_commit.GroupCommitter._commit

    def counted(self: group_commit.GroupCommitter[Any, Any], group: Any) -> None:  # noqa: ANN401
        _groups.append(len(group))
        real_group(self, group)

    group_commit.GroupCommitter._commit = counted  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=3000)
    args = parser.parse_args()
    _instrument()
    with tempfile.TemporaryDirectory() as tmp, _stack(Path(tmp), args.agents) as stack:
        targets = [stack.target(agent_id) for agent_id in stack.sims]
        pool = ThreadPoolExecutor(16)
        list(pool.map(stack.runner.run, targets))  # registered -> attested
        modes = modes_of(stack)
        runners = {"on": modes["recording"], "off": modes["not_recording"]}
        cpu: dict[str, list[float]] = {"on": [], "off": []}
        best: tuple[float, dict[str, float], list[int]] | None = None
        for _ in range(3):
            for mode, runner in runners.items():
                _spent.clear()
                _groups.clear()
                began = time.process_time()
                for _start in range(0, args.rounds, len(targets)):
                    runner.run(pool, targets)
                per_round = (time.process_time() - began) / args.rounds
                cpu[mode].append(per_round)
                if mode == "on" and (best is None or per_round < best[0]):
                    best = (per_round, dict(_spent), list(_groups))
        pool.shutdown()
    assert best is not None
    _print(cpu, best, args.rounds)


def _print(
    cpu: dict[str, list[float]], best: tuple[float, dict[str, float], list[int]], rounds: int
) -> None:
    on, off = min(cpu["on"]), min(cpu["off"])
    _, spent, groups = best
    print(f"process CPU per round: {off * 1e3:.3f} ms without recording, {on * 1e3:.3f} ms with")
    print(f"recording adds {(on - off) * 1e3:.3f} ms ({(on - off) / off * 100:.1f} %)")
    print(f"groups: {len(groups)}, {sum(groups) / max(len(groups), 1):.1f} rounds each")
    writer = spent.get("writer: the whole group commit", 0.0)
    handoff = spent.get("round threads: hand-off (submit)", 0.0)
    writer -= spent.get("writer: finishing the rounds (then)", 0.0)  # the baseline does it too
    for label in sorted(spent):
        print(f"  {label:52s} {spent[label] / rounds * 1e3:7.4f} ms/round")
    rest = (on - off) - (writer + handoff) / rounds
    label = "rest (finishing on the writer, thread switches, GIL)"
    print(f"  {label:52s} {rest * 1e3:7.4f} ms/round")


if __name__ == "__main__":
    main()
