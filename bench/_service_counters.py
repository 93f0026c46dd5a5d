"""What the shared services did in a benchmark's window, for the sizing table (docs/deploy.md):
commands Redis ran, and transactions and rows PostgreSQL committed.

Both are server-side counters, so they count every client (the verifier's API, workers, beat
or push listener, and the benchmark's own reads, which are kept out of the window). The first
snapshot's INFO is subtracted; its SQL read rolls back, so it is no commit. PostgreSQL
publishes its counters about once a second, so a window of tens of seconds is what gives a
per-round figure its precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from sqlalchemy import create_engine, text

_ROW_COUNTERS = text(
    "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted "
    "FROM pg_stat_database WHERE datname = current_database()"
)


@dataclass(frozen=True, slots=True)
class ServiceCounters:
    redis_commands: dict[str, int]  # calls by command name (``cmdstat_get`` -> ``get``)
    database_commits: int | None  # None: a SQLite database, which counts nothing
    database_rows: int | None

    def per_round(self, later: ServiceCounters, rounds: int) -> str:
        """``later - self`` per round, as a report line's fragment."""
        n = max(rounds, 1)
        calls = {
            name: count - self.redis_commands.get(name, 0)
            for name, count in later.redis_commands.items()
        }
        calls["info"] = calls.get("info", 0) - 1  # the first snapshot's
        busiest = sorted(calls.items(), key=lambda item: -item[1])[:6]
        line = (
            f"Redis {sum(calls.values()) / n:.1f} commands ("
            + ", ".join(f"{name} {count / n:.1f}" for name, count in busiest if count > 0)
            + ")"
        )
        if self.database_commits is not None and later.database_commits is not None:
            assert self.database_rows is not None
            assert later.database_rows is not None
            commits = (later.database_commits - self.database_commits) / n  # reads roll back
            rows = (later.database_rows - self.database_rows) / n
            line += f", PostgreSQL {commits:.2f} commits and {rows:.1f} rows written"
        return line + " per round (all clients; the calls Lua scripts make included)"


def service_counters(redis_url: str, database_url: str) -> ServiceCounters:
    client = redis.Redis.from_url(redis_url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    commands = {name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in stats.items()}
    if not database_url.startswith("postgresql"):
        return ServiceCounters(commands, None, None)
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            commits, rows = connection.execute(_ROW_COUNTERS).one()
    finally:
        engine.dispose()
    return ServiceCounters(commands, int(commits), int(rows))
