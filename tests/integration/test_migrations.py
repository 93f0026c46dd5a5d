"""The Alembic history and the SQLAlchemy models describe the same schema, on a real SQLite file
and a real PostgreSQL database."""

from __future__ import annotations

import stat
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

import keyrelease.models  # noqa: F401  # the key service's release log
import registrar.models  # noqa: F401  # registers the registrar's tables
import verifier.storage.models  # noqa: F401  # and the verifier's
from geoattest.db import MIGRATIONS_DIR, Base, make_engine, migrate


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
    assert {"registrar_agents", "registrar_enrolments", "verifier_agents", "alembic_version"} <= (
        tables
    )
    assert "registrar_challenges" not in tables  # it held challenge secrets in plain


def test_a_sqlite_database_is_created_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "geoattest.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    with engine.connect() as open_connection:  # WAL mode: SQLite's -wal and -shm exist now
        open_connection.execute(text("SELECT count(*) FROM registrar_agents"))
        sidecars = sorted(path.parent.glob("geoattest.sqlite-*"))
        sidecar_modes = [stat.S_IMODE(sidecar.stat().st_mode) for sidecar in sidecars]
    engine.dispose()
    assert len(sidecars) == 2, sidecars
    assert sidecar_modes == [0o600, 0o600]  # SQLite gives them the database file's mode
    # Created owner-only: the database file 0600, the directories it needed 0700.
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "nested").stat().st_mode) == 0o700


def test_upgrade_drops_plain_secrets_and_unproven_records(tmp_path: Path) -> None:
    """0007 removes the challenge table (secrets in plain) and records never activated."""
    engine = make_engine(f"sqlite:///{tmp_path / 'old.sqlite'}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0006_enrolment_digest")
        for agent_id, state in (("proven", "active"), ("unproven", "pending")):
            connection.execute(
                text(
                    "INSERT INTO registrar_agents (agent_id, state, ek_certificate, "
                    "ek_fingerprint, ek_public, ek_anchor_subject, ek_anchor_fingerprint, "
                    "enrolled_at) VALUES (:id, :state, x'00', :id, x'00', 'CN=a', 'ff', "
                    "'2026-11-30 10:00:00')"
                ),
                {"id": agent_id, "state": state},
            )
        connection.execute(
            text(
                "INSERT INTO registrar_challenges (agent_id, ak_public, ak_name, secret, "
                "expires_at, failed_attempts) VALUES ('unproven', x'00', x'00', x'5ec0', "
                "'2026-11-30 10:05:00', 0)"
            )
        )
    migrate(engine)
    with engine.connect() as connection:
        kept = connection.execute(text("SELECT agent_id FROM registrar_agents")).scalars().all()
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert kept == ["proven"]
    assert "registrar_challenges" not in tables
