"""Figures of the fleet benchmark: late rounds from request times, CPU per process from /proc.

Late round (the definition ``docs/benchmarks.md`` quotes): the gap between two consecutive
evidence fetches of one agent is longer than ``LATE_FACTOR`` x the round interval (3 s at 2 s).
The verifier schedules an agent's next round ``interval`` seconds after its round *ended*, and
beat dispatches due agents every 0.25 s, so an idle verifier already shows gaps of interval +
round time + up to 0.25 s (about 2.05-2.3 s); 1.5x leaves room for that and for ordinary
scheduling jitter, while a verifier that cannot keep up builds a backlog whose gaps pass it.
Gaps cut by the window's edges count as late when what is seen of them already exceeds the limit
(an agent starved for the whole window is late, not absent from the figures).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

LATE_FACTOR = 1.5
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundFigures:
    agents: int
    rounds: int  # evidence fetches in the window
    gaps: int  # rounds counted for lateness (closed gaps + late edges)
    late: int
    gap_p50: float
    gap_p99: float
    gap_max: float
    seconds: float

    @property
    def late_fraction(self) -> float:
        return self.late / self.gaps if self.gaps else 1.0

    @property
    def rounds_per_second(self) -> float:
        return self.rounds / self.seconds


def round_figures(
    times: Mapping[str, Sequence[float]],
    agent_ids: Iterable[str],
    start: float,
    end: float,
    interval: float,
) -> RoundFigures:
    """Late rounds of ``agent_ids`` from their evidence fetch ``times`` within [start, end]."""
    limit = interval * LATE_FACTOR
    gaps: list[float] = []
    late_edges = 0
    rounds = 0
    agents = 0
    for agent_id in agent_ids:
        agents += 1
        seen = sorted(t for t in times.get(agent_id, ()) if start <= t <= end)
        rounds += len(seen)
        if not seen:
            late_edges += 1 if end - start > limit else 0
            continue
        gaps.extend(b - a for a, b in pairwise(seen))
        late_edges += (seen[0] - start > limit) + (end - seen[-1] > limit)
    late = sum(1 for gap in gaps if gap > limit) + late_edges
    ordered = sorted(gaps)
    return RoundFigures(
        agents=agents,
        rounds=rounds,
        gaps=len(gaps) + late_edges,
        late=late,
        gap_p50=percentile(ordered, 0.50),
        gap_p99=percentile(ordered, 0.99),
        gap_max=ordered[-1] if ordered else math.nan,
        seconds=end - start,
    )


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values``, sorted or not (NaN when empty)."""
    if not values:
        return math.nan
    ordered = sorted(values)  # linear when they already are
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


# --- CPU -----------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on


def _parents() -> dict[int, int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                parents[int(entry)] = int(fields[1])
    return parents


def _cpu_seconds(pid: int) -> float:
    fields = _stat_fields(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / _TICKS


def cpu_snapshot(
    roots: Mapping[str, int], *, own_only: Iterable[str] = ()
) -> dict[int, tuple[str, float]]:
    """CPU seconds used so far by each process under the labelled ``roots`` (a root's
    descendants carry its label, unless they are a root themselves; ``own_only`` labels count
    their root process alone)."""
    parents = _parents()
    label_of = {pid: label for label, pid in roots.items()}
    alone = set(own_only)
    snapshot: dict[int, tuple[str, float]] = {}
    for pid in parents:
        walk, label = pid, None
        while walk in parents:
            if walk in label_of:
                label = label_of[walk]
                break
            walk = parents[walk]
        if label is None or (label in alone and walk != pid):
            continue
        snapshot[pid] = (label, _cpu_seconds(pid))
    return snapshot


def cpu_by_label(
    before: Mapping[int, tuple[str, float]], after: Mapping[int, tuple[str, float]], seconds: float
) -> dict[str, float]:
    """Cores used per label between two snapshots (1.0 = one core busy all the time)."""
    used: dict[str, float] = {}
    for pid, (label, cpu) in after.items():
        previous = before.get(pid, (label, 0.0))[1]
        used[label] = used.get(label, 0.0) + (cpu - previous) / seconds
    return used


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine so far (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return float(total - idle), float(total)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])
