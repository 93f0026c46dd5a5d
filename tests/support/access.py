"""API keys for tests: issued straight into a service's database, as ``geoattest api-keys create``
does, so that the services under test run with their access checks on."""

from __future__ import annotations

import datetime as dt
import os

from geoattest.access.keys import Role
from geoattest.access.store import AccessStore
from geoattest.db import make_engine, migrate, session_factory


def issue_api_key(database_url: str, role: Role = Role.ADMIN, name: str | None = None) -> str:
    engine = make_engine(database_url)
    try:
        migrate(engine)
        store = AccessStore(session_factory(engine))
        # A fresh name each time: a service restarted on the same database gets new keys.
        unique = f"{name or 'tests'}-{role}-{os.urandom(4).hex()}"
        return store.create(unique, role, dt.datetime.now(dt.UTC))
    finally:
        engine.dispose()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
