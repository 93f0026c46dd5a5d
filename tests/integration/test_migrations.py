"""The Alembic history and the SQLAlchemy models describe the same schema, on a real SQLite file
and a real PostgreSQL database."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import registrar.models  # noqa: F401  # registers the registrar's tables
import verifier.storage.models  # noqa: F401  # and the verifier's
from geoattest.db import Base, make_engine, migrate


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


def test_migrate_is_idempotent(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    migrate(engine)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"registrar_agents", "registrar_challenges", "verifier_agents", "alembic_version"} <= (
        tables
    )


def test_migrate_creates_the_parent_directory_of_a_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "geoattest.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    assert path.exists()
