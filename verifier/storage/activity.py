"""The fleet's recent activity in time buckets, for the dashboard's charts.

Read from what the database keeps, so every API process and every worker agree: rounds by
outcome and their latency (a record's ``ended_at - started_at``) from the evidence records, tokens
issued from the token ledger. A window is at most an hour (every round is still a row of its own
then: records fold after the hot window) and at most ``MAX_ROWS`` rounds are read; past that the
answer says ``truncated`` and counts only the newest. A Prometheus server keeps the long history
(``docs/metrics.md``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from geoattest.db import as_utc, transaction
from verifier.storage.models import RecordRow, TokenRow

MAX_ROWS = 200_000
_ROUND = "round"


@dataclass(slots=True)
class Bucket:
    start: dt.datetime
    rounds: dict[str, int] = field(default_factory=dict)  # by outcome
    latencies: list[float] = field(default_factory=list)  # seconds, for the quantiles
    tokens: int = 0

    def latency(self, quantile: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]


@dataclass(frozen=True, slots=True, kw_only=True)
class Activity:
    since: dt.datetime
    bucket_seconds: float
    buckets: list[Bucket]
    truncated: bool  # more rounds than ``MAX_ROWS`` in the window: the oldest were not read


class ActivityReads:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def window(self, now: dt.datetime, seconds: float, buckets: int) -> Activity:
        """The last ``seconds`` before ``now`` in ``buckets`` equal buckets, oldest first."""
        since = now - dt.timedelta(seconds=seconds)
        width = seconds / buckets
        out = [Bucket(start=since + dt.timedelta(seconds=i * width)) for i in range(buckets)]

        def slot(at: dt.datetime) -> Bucket | None:
            index = int((as_utc(at) - since).total_seconds() // width)
            return out[index] if 0 <= index < buckets else None

        rounds = (
            select(RecordRow.started_at, RecordRow.ended_at, RecordRow.outcome)
            # Both values of ``kept``: the (kept, ended_at) index serves the time range.
            .where(RecordRow.kept.in_([False, True]), RecordRow.ended_at >= since)
            .where(RecordRow.kind == _ROUND)
            .order_by(RecordRow.ended_at.desc())
            .limit(MAX_ROWS + 1)
        )
        tokens = select(TokenRow.issued_at).where(TokenRow.issued_at >= since)
        with transaction(self._sessions) as session:
            rows = session.execute(rounds).all()
            issued = session.execute(tokens).scalars().all()
        for started, ended, outcome in rows[:MAX_ROWS]:
            found = slot(ended)
            if found is None or outcome is None:
                continue
            found.rounds[outcome] = found.rounds.get(outcome, 0) + 1
            found.latencies.append(max((as_utc(ended) - as_utc(started)).total_seconds(), 0.0))
        for at in issued:
            if (found := slot(at)) is not None:
                found.tokens += 1
        return Activity(
            since=since, bucket_seconds=width, buckets=out, truncated=len(rows) > MAX_ROWS
        )
