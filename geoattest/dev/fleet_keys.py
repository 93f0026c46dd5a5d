"""The local fleet's API keys: created on the first run, kept owner-only in the state directory
(``api-keys/<name>.key``) and reused by the next runs, so an operator can log in to a fleet."""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path

from geoattest.access.keys import Role
from geoattest.access.store import AccessStore
from geoattest.db import make_engine, migrate, session_factory
from geoattest.errors import NotFound
from geoattest.private_files import create_private_file, ensure_private_dir


def ensure_api_key(state_dir: Path, database_url: str, name: str, role: Role) -> str:
    """The key named ``name`` in the service database at ``database_url``, from its file if it
    still authenticates there, else a new one (an older key of that name is revoked)."""
    directory = ensure_private_dir(state_dir / "api-keys")
    path = directory / f"{name}.key"
    engine = make_engine(database_url)
    try:
        migrate(engine)
        store = AccessStore(session_factory(engine))
        if path.is_file():
            key = path.read_text().strip()
            found = store.authenticate(key)
            if found is not None and found.role is role:
                return key
        now = dt.datetime.now(dt.UTC)
        with contextlib.suppress(NotFound):  # a key of that name whose file was lost
            store.revoke(name, now)
        key = store.create(name, role, now)
        path.unlink(missing_ok=True)
        create_private_file(path, key.encode())
        return key
    finally:
        engine.dispose()
