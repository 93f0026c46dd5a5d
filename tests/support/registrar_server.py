"""A real registrar served over HTTP on a free loopback port, on its own database (a SQLite file
unless a URL is given)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from geoattest.access.keys import Role
from geoattest.db import sqlite_path
from geoattest.registrar_client import RegistrarClient
from geoattest.settings import load_settings
from geoattest.wire import AgentView
from registrar.app import create_app
from tests.support.access import bearer, issue_api_key
from tests.support.served_app import ServedApp


@dataclass(frozen=True, slots=True)
class RunningRegistrar:
    url: str
    database_url: str
    trust_dir: Path
    api_key: str  # role admin: what an operator (and these tests) present
    reader_key: str  # role viewer: what a verifier presents to read identities
    signing_key: Path  # PEM of the registrar's public signing key (what verifiers pin)
    server: ServedApp  # stop() takes the registrar down, start() brings it back (same port)

    @property
    def database(self) -> Path:
        """The SQLite file (for tests of its modes); an error on PostgreSQL."""
        path = sqlite_path(self.database_url)
        if path is None:
            raise ValueError(f"{self.database_url} is not a SQLite file")
        return path

    def post(self, path: str, body: object) -> requests.Response:
        return requests.post(self.url + path, json=body, timeout=10)

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, headers=bearer(self.api_key), timeout=10)

    def client(self, key: str | None = None) -> RegistrarClient:
        """A client presenting ``key`` (default: the admin key)."""
        return RegistrarClient(self.url, api_key=key or self.api_key)


def recorded_facts(view: AgentView) -> AgentView:
    """``view`` without the registrar's statement and signature, which are made afresh (with
    their own time) for every answer: what to compare when asking whether a record changed."""
    return view.model_copy(update={"identity_statement": None, "identity_signature": None})


def trust_dir_with(directory: Path, certificates: Sequence[Path]) -> Path:
    """A trust-store directory holding copies of ``certificates``."""
    directory.mkdir(parents=True, exist_ok=True)
    for cert in certificates:
        shutil.copyfile(cert, directory / cert.name)
    return directory


@contextmanager
def running_registrar(
    workdir: Path,
    trust_dir: Path,
    *,
    pins_file: Path | None = None,
    challenge_ttl_seconds: int | None = None,
    database_url: str | None = None,
) -> Iterator[RunningRegistrar]:
    """Serve ``create_app`` over real HTTP on a free loopback port for the block.

    werkzeug's threaded server is used in-process because it stops cleanly from another thread
    (waitress has no thread-safe stop); the waitress path is covered by the CLI test.
    """
    database_url = database_url or f"sqlite:///{workdir / 'registrar.sqlite'}"
    settings = load_settings(
        database_url=database_url,
        registrar_state_dir=workdir / "registrar-state",
        ek_ca_dir=trust_dir,
        ek_pins_file=pins_file,
        challenge_ttl_seconds=challenge_ttl_seconds,
    )
    app = create_app(settings)
    admin = issue_api_key(settings.database_url, Role.ADMIN, "tests-admin")
    signing_key = workdir / "registrar-signing-key.pem"
    signing_key.write_text(app.extensions["geoattest.signer"].public_pem())
    reader = issue_api_key(settings.database_url, Role.VIEWER, "verifier")
    server = ServedApp(app, "registrar")
    server.start()
    try:
        yield RunningRegistrar(
            url=server.url,
            database_url=database_url,
            trust_dir=trust_dir,
            api_key=admin,
            reader_key=reader,
            signing_key=signing_key,
            server=server,
        )
    finally:
        server.stop()
        app.extensions["geoattest.engine"].dispose()
