"""When the node was attested, from its chain: the lease (``verifier.core.lease``) replayed.

A passed round vouches for ``max_age`` after it ends, until a record moves the state away from
``attested``; a fold of passed rounds vouches from its first round to ``max_age`` after its
last, except where two of its rounds were further apart than ``max_age`` (a fold keeps the
longest interval, not where it was: that lapse is counted, unplaced). Gaps are the rest of the
window. Days are UTC days; a fold counts on the day of its first round. Pure.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from verifier.export.results import AtAnswer, DaySummary, Fix, Interval, Link, LinkKind

_ATTESTED = "attested"
_PASSED = "passed"


def attested_intervals(
    links: Sequence[Link], max_age: dt.timedelta, start: dt.datetime, end: dt.datetime
) -> tuple[list[Interval], float]:
    """The attested stretches inside ``[start, end]`` and the unplaced lapses (seconds)."""
    stretches: list[Interval] = []
    unplaced = 0.0
    open_at: dt.datetime | None = None
    lease_end: dt.datetime | None = None

    def close(at: dt.datetime) -> None:
        nonlocal open_at
        if open_at is not None and at > open_at:
            stretches.append(Interval(start=open_at, end=at))
        open_at = None

    for link in links:
        begins = link.started_at if link.kind is LinkKind.FOLD else link.ended_at
        if lease_end is not None and open_at is not None and lease_end < begins:
            close(lease_end)
        if link.kind is LinkKind.FOLD:
            passes = link.outcomes.get(_PASSED, 0)
            if passes and link.from_state in (_ATTESTED, None):
                if open_at is None:
                    open_at = link.started_at
                lapse = link.max_gap - max_age
                if lapse > dt.timedelta(0):
                    unplaced += lapse.total_seconds()
                lease_end = link.ended_at + max_age
            else:
                close(link.started_at)
            continue
        if link.to_state == _ATTESTED and link.outcome == _PASSED:
            if open_at is None:
                open_at = link.ended_at
            lease_end = link.ended_at + max_age
        elif link.to_state != _ATTESTED:
            close(link.ended_at)
            lease_end = None
    if open_at is not None and lease_end is not None:
        close(lease_end)
    clipped = [
        Interval(start=max(s.start, start), end=min(s.end, end))
        for s in stretches
        if s.end > start and s.start < end
    ]
    return _merge(clipped), unplaced


def gaps_of(attested: Sequence[Interval], start: dt.datetime, end: dt.datetime) -> list[Interval]:
    gaps: list[Interval] = []
    cursor = start
    for stretch in attested:
        if stretch.start > cursor:
            gaps.append(Interval(start=cursor, end=stretch.start))
        cursor = max(cursor, stretch.end)
    if cursor < end:
        gaps.append(Interval(start=cursor, end=end))
    return gaps


def day_summaries(
    links: Sequence[Link],
    gaps: Sequence[Interval],
    start: dt.datetime,
    end: dt.datetime,
    *,
    location_required: bool,
) -> list[DaySummary]:
    days: list[DaySummary] = []
    day = start.astimezone(dt.UTC).date()
    while dt.datetime.combine(day, dt.time(), dt.UTC) < end:
        lo = max(start, dt.datetime.combine(day, dt.time(), dt.UTC))
        hi = min(end, dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC))
        todays = [link for link in links if lo <= _when(link) < hi or _when(link) == end == hi]
        days.append(_day(day, todays, gaps, lo, hi, location_required))
        day += dt.timedelta(days=1)
    return days


def _day(
    day: dt.date,
    links: Sequence[Link],
    gaps: Sequence[Interval],
    lo: dt.datetime,
    hi: dt.datetime,
    location_required: bool,
) -> DaySummary:
    counts = {"passed": 0, "integrity_failure": 0, "unreachable": 0, "other": 0}
    decisions = {"inside": 0, "outside": 0, "uncertain": 0}
    rounds = 0
    for link in links:
        rounds += link.rounds
        if link.kind is LinkKind.FOLD:
            for outcome, count in link.outcomes.items():
                counts[outcome if outcome in counts else "other"] += count
            if location_required:  # a passed round was inside: the policy demands it
                decisions["inside"] += link.outcomes.get(_PASSED, 0)
            continue
        if link.kind is LinkKind.ROUND and link.outcome is not None:
            counts[link.outcome if link.outcome in counts else "other"] += 1
        if link.fix is not None and link.fix.decision in decisions:
            decisions[link.fix.decision] += 1
    gap = sum(
        (min(g.end, hi) - max(g.start, lo)).total_seconds()
        for g in gaps
        if g.end > lo and g.start < hi
    )
    return DaySummary(
        day=day,
        rounds=rounds,
        passed=counts["passed"],
        failed=counts["integrity_failure"],
        unreachable=counts["unreachable"],
        other=counts["other"],
        gap_seconds=gap,
        inside=decisions["inside"],
        outside=decisions["outside"],
        uncertain=decisions["uncertain"],
    )


def answer_at(links: Sequence[Link], attested: Sequence[Interval], at: dt.datetime) -> AtAnswer:
    """Was the node attested at ``at``, in which state, and where was it last seen."""
    covered = any(s.start <= at < s.end for s in attested)
    before = [link for link in links if _when(link) <= at]
    deciding = before[-1] if before else None
    state = (deciding.to_state or deciding.from_state or "unknown") if deciding else "unknown"
    why = "no record before this time in the bundle"
    if deciding is not None:
        span = (
            f"fold #{deciding.first_seq}..#{deciding.last_seq}"
            if deciding.kind is LinkKind.FOLD
            else f"record #{deciding.first_seq}"
        )
        why = f"{span}, ended {deciding.ended_at:%Y-%m-%d %H:%M:%S}Z"
    fixed = [link for link in before if link.fix is not None and link.fix.decision != "unverified"]
    last_fix: Fix | None = fixed[-1].fix if fixed else None
    return AtAnswer(
        at=at,
        attested=covered,
        state=_ATTESTED if covered else (state if state != _ATTESTED else "stale"),
        why=why,
        fix=last_fix,
        fix_at=fixed[-1].ended_at if fixed else None,
        fix_seq=fixed[-1].first_seq if fixed else None,
    )


def _when(link: Link) -> dt.datetime:
    return link.started_at if link.kind is LinkKind.FOLD else link.ended_at


def _merge(intervals: Sequence[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for interval in sorted(intervals, key=lambda i: i.start):
        if merged and interval.start <= merged[-1].end:
            last = merged[-1]
            merged[-1] = Interval(start=last.start, end=max(last.end, interval.end))
        else:
            merged.append(interval)
    return merged
