"""Alembic environment: runs on the connection handed over by ``geoattest.db.migrate``."""

from __future__ import annotations

from alembic import context

import geoattest.access.models  # noqa: F401  # and API keys and the audit log
import keyrelease.models  # noqa: F401  # the key service's release log
import registrar.models  # noqa: F401  # registers the registrar tables on the metadata
import verifier.storage.models  # noqa: F401  # and the verifier tables
from geoattest.db import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through geoattest.db.migrate(engine)")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
