"""Database wiring: the declarative base, engines, sessions and schema migrations (Alembic).

SQLite file by default; PostgreSQL by setting a ``postgresql+psycopg://`` URL (psycopg 3; see
``docs/configuration.md`` for the URL forms and how many connections each process opens). The
schema is owned by the migrations in ``geoattest/migrations``: services call ``migrate(url)`` at
start-up, never ``create_all``, so a production database and a test database have the same
history.

Every timestamp geoattest stores is UTC, and reads come back as aware UTC datetimes whatever the
database server's ``timezone``: PostgreSQL sessions are opened with ``timezone=UTC``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from geoattest.private_files import check_private, create_private_file, ensure_private_dir
from geoattest.wal_checkpoints import checkpoint_in_background

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class Base(DeclarativeBase):
    """Declarative base every service's tables derive from (one metadata, one migration history)."""


SQLITE_SIDECARS = ("-wal", "-shm", "-journal")


def make_engine(url: str, *, background_checkpoints: bool = False) -> Engine:
    """An engine for ``url``; for SQLite, enable WAL and FKs, and create a missing database file
    owner-only (0600, in directories created 0700) before SQLite opens it, so that it is never
    readable by others (SQLite gives its -wal and -shm files the database file's mode); for
    PostgreSQL, sessions in UTC. SQLAlchemy's default pool: up to 5 connections kept and 10 more
    on demand per engine (one engine per process).

    ``background_checkpoints`` (long-running services; SQLite files only): WAL checkpoints run
    on a thread of their own instead of inside the commit that fills the log
    (``geoattest.wal_checkpoints``)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        # The server's own time zone would otherwise show in every timestamp read back. Options
        # given in the URL are kept (connect_args would replace them), ours come last and win.
        given = parsed.query.get("options", "")
        given = given if isinstance(given, str) else " ".join(given)
        options = f"{given} -c timezone=UTC".strip()
        return create_engine(url, pool_pre_ping=True, connect_args={"options": options})
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    path = sqlite_path(url)
    if path is not None:
        if not path.parent.exists():
            ensure_private_dir(path.parent)
        create_private_file(path)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
    event.listen(engine, "connect", _sqlite_pragmas)
    if background_checkpoints and path is not None:
        checkpoint_in_background(engine, path)
    return engine


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite ``url``; ``None`` for other databases and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:" or parsed.database.startswith("file::memory:"):
        return None
    return Path(parsed.database)


def check_private_database(url: str) -> None:
    """Refuse a SQLite database file (or its -wal, -shm, -journal file) that is not owner-only.

    A no-op for server databases (PostgreSQL guards its own files). Raises
    ``ConfigurationError`` naming the path and its mode (``geoattest.private_files``).
    """
    path = sqlite_path(url)
    if path is None:
        return
    for candidate in (path, *(path.with_name(path.name + s) for s in SQLITE_SIDECARS)):
        if candidate.exists():
            check_private(candidate)


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]  # DB-API connection, untyped
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL syncs at checkpoints, not at every commit: a committed transaction
    # survives a crash of any process; only a power loss may take the last ones back. One fsync
    # per commit cost more than a whole round (docs/benchmarks.md, evidence records).
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def migrate(engine: Engine) -> None:
    """Bring the schema of ``engine``'s database to the newest migration (idempotent)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    log.info("database schema at head: %s", engine.url.render_as_string(hide_password=True))


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error (nothing half-written)."""
    with factory() as session, session.begin():
        yield session


def as_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime: SQLite hands back naive ones for timezone columns
    (everything geoattest stores is UTC), PostgreSQL aware ones in the session's zone."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
