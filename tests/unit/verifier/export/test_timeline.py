"""The lease replayed over a chain: stretches attested, gaps, lapses inside folds, days, --at."""

from __future__ import annotations

import datetime as dt

from verifier.export.results import Fix, Interval, Link, LinkKind
from verifier.export.timeline import answer_at, attested_intervals, day_summaries, gaps_of

T0 = dt.datetime(2026, 12, 1, 23, 50, tzinfo=dt.UTC)
AGE = dt.timedelta(seconds=10)


def _record(seq: int, at: float, outcome: str, to: str, fix: Fix | None = None) -> Link:
    moment = T0 + dt.timedelta(seconds=at)
    return Link(
        agent_id="a", kind=LinkKind.ROUND, first_seq=seq, last_seq=seq, started_at=moment,
        ended_at=moment, outcome=outcome, reason=None, from_state=None, to_state=to, fix=fix,
    )  # fmt: skip


def _fold(first: int, last: int, start: float, end: float, gap: float) -> Link:
    return Link(
        agent_id="a", kind=LinkKind.FOLD, first_seq=first, last_seq=last,
        started_at=T0 + dt.timedelta(seconds=start), ended_at=T0 + dt.timedelta(seconds=end),
        outcome=None, reason=None, from_state="attested", to_state="attested",
        outcomes={"passed": last - first + 1}, max_gap=dt.timedelta(seconds=gap),
    )  # fmt: skip


def _at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_passes_and_a_fold_vouch_until_max_age_after_the_last() -> None:
    links = [
        _record(1, 0, "passed", "attested"),
        _fold(2, 50, 2, 100, 2),
        _record(51, 102, "passed", "attested"),
    ]
    attested, unplaced = attested_intervals(links, AGE, _at(0), _at(200))
    assert attested == [Interval(start=_at(0), end=_at(112))]
    assert unplaced == 0
    assert gaps_of(attested, _at(0), _at(200)) == [Interval(start=_at(112), end=_at(200))]


def test_a_failure_ends_the_stretch_at_once_and_a_pass_after_readmission_starts_another() -> None:
    links = [
        _record(1, 0, "passed", "attested"),
        _record(2, 4, "integrity_failure", "failed"),
        _record(3, 30, "passed", "attested"),
    ]
    attested, _ = attested_intervals(links, AGE, _at(0), _at(35))
    assert attested == [Interval(start=_at(0), end=_at(4)), Interval(start=_at(30), end=_at(35))]


def test_a_lease_lapse_inside_a_fold_is_counted_unplaced() -> None:
    links = [_record(1, 0, "passed", "attested"), _fold(2, 20, 2, 80, 25)]
    _, unplaced = attested_intervals(links, AGE, _at(0), _at(90))
    assert unplaced == 15  # the longest interval, 25 s, exceeded the 10 s lease by 15 s


def test_a_silence_longer_than_the_lease_is_a_gap_even_without_a_record_saying_so() -> None:
    links = [_record(1, 0, "passed", "attested"), _record(2, 60, "passed", "attested")]
    attested, _ = attested_intervals(links, AGE, _at(0), _at(65))
    assert gaps_of(attested, _at(0), _at(65)) == [Interval(start=_at(10), end=_at(60))]


def test_days_split_at_utc_midnight_and_folds_count_as_inside_when_location_is_required() -> None:
    inside = Fix(latitude=48.2, longitude=8.4, accuracy_m=5, decision="inside", zone_id="DEU")
    links = [_record(1, 0, "passed", "attested", inside), _fold(2, 400, 2, 700, 2)]
    attested, _ = attested_intervals(links, AGE, _at(0), _at(800))
    days = day_summaries(links, gaps_of(attested, _at(0), _at(800)), _at(0), _at(800),
                         location_required=True)  # fmt: skip
    assert [d.day.day for d in days] == [1, 2]
    assert (days[0].rounds, days[0].inside, days[1].rounds) == (400, 400, 0)
    assert days[1].gap_seconds == 800 - 710


def test_at_a_moment_the_answer_names_the_state_and_the_last_fix() -> None:
    fix = Fix(latitude=48.2, longitude=8.4, accuracy_m=5, decision="inside", zone_id="DEU")
    links = [
        _record(1, 0, "passed", "attested", fix),
        _record(2, 20, "unreachable", "unreachable"),
        _record(3, 40, "passed", "attested"),
    ]
    attested, _ = attested_intervals(links, AGE, _at(0), _at(60))
    during = answer_at(links, attested, _at(25))
    assert (during.attested, during.state) == (False, "unreachable")
    assert during.fix == fix
    assert answer_at(links, attested, _at(5)).attested
