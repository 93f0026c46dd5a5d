"""A real registrar served over HTTP on a free loopback port, on its own database (a SQLite file
unless a URL is given)."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from werkzeug.serving import make_server

from geoattest.settings import load_settings
from registrar.app import create_app


@dataclass(frozen=True, slots=True)
class RunningRegistrar:
    url: str
    database_url: str
    trust_dir: Path

    def post(self, path: str, body: object) -> requests.Response:
        return requests.post(self.url + path, json=body, timeout=10)

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, timeout=10)


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
    admin_token: str | None = None,
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
        ek_ca_dir=trust_dir,
        ek_pins_file=pins_file,
        admin_token=admin_token,
        challenge_ttl_seconds=challenge_ttl_seconds,
    )
    app = create_app(settings)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    port = server.server_port
    thread = threading.Thread(target=server.serve_forever, name="registrar", daemon=True)
    thread.start()
    try:
        yield RunningRegistrar(
            url=f"http://127.0.0.1:{port}", database_url=database_url, trust_dir=trust_dir
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        app.extensions["geoattest.engine"].dispose()
