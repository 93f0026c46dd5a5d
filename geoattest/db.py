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

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class Base(DeclarativeBase):
    """Declarative base every service's tables derive from (one metadata, one migration history)."""


def make_engine(url: str) -> Engine:
    """An engine for ``url``; for SQLite, create the parent directory, enable WAL and FKs; for
    PostgreSQL, sessions in UTC. SQLAlchemy's default pool: up to 5 connections kept and 10 more
    on demand per engine (one engine per process)."""
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
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]  # DB-API connection, untyped
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
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
