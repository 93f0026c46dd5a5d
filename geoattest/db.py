"""Database wiring: the declarative base, engines, sessions and schema migrations (Alembic).

SQLite file by default; any SQLAlchemy URL (PostgreSQL) by setting. The schema is owned by the
migrations in ``geoattest/migrations``: services call ``migrate(url)`` at start-up, never
``create_all``, so a production database and a test database have the same history.
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
    """An engine for ``url``; for SQLite, create the parent directory, enable WAL and FKs."""
    parsed = make_url(url)
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
    """``moment`` as an aware UTC datetime: SQLite hands back naive ones for timezone columns, and
    everything geoattest stores is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
