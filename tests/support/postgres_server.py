"""A throwaway PostgreSQL cluster on a free loopback port, for tests (no system service).

``running_postgres()`` runs Debian's ``initdb`` and ``pg_ctl`` (package ``postgresql``) on a new
directory, and ``PostgresServer.database()`` gives each test a fresh, empty database dropped
afterwards. ``initdb`` refuses to run as root, so as root the cluster belongs to the ``postgres``
user (commands go through ``runuser``) in a directory under the system temp dir that user owns;
pytest's own temp dirs are private to root.

The cluster runs with durability off (``fsync``, ``synchronous_commit``, ``full_page_writes``)
since nothing in it outlives the session, and with a non-UTC ``timezone`` on purpose, so code
that lets the server's time zone leak into what it reads back is caught.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from geoattest.dev.procs import free_port

SUPERUSER = "geo"
SERVER_TIMEZONE = "Asia/Kathmandu"  # UTC+05:45: an offset nobody mistakes for UTC
_CLUSTER_USER = "postgres"
_START_ATTEMPTS = 3
_names = itertools.count()


def postgres_bindir() -> Path:
    """The newest ``/usr/lib/postgresql/<N>/bin`` with initdb; skips (fails on CI) if absent."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if not found:
        message = "PostgreSQL not installed (apt-get install postgresql; deploy/test does it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found[-1].parent


class PostgresServer:
    """A running cluster: trust authentication for ``SUPERUSER`` on 127.0.0.1:``port``.

    Creating a database takes about 0.3 s, so one is always being made ahead on a background
    thread while the current test runs, and drops happen there too.
    """

    def __init__(self, port: int, directory: Path) -> None:
        self.port = port
        self.directory = directory
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="postgres-fixture")
        self._next: Future[str] = self._worker.submit(self._create)

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` on this cluster (psycopg 3 driver)."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True
        )

    def _create(self) -> str:
        name = f"test_{os.getpid()}_{next(_names)}"
        with self._admin() as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return name

    def _drop(self, name: str) -> None:
        with self._admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    @contextmanager
    def database(self) -> Iterator[str]:
        """A new empty database for the block (its URL); dropped afterwards, connections too."""
        name = self._next.result()
        self._next = self._worker.submit(self._create)
        try:
            yield self.url(name)
        finally:
            self._worker.submit(self._drop, name)

    def block(self, url: str) -> None:
        """Make the database of ``url`` unreachable: new connections refused, open ones ended
        (what clients see when the server is stopped, without stopping the session's cluster)."""
        name = url.rsplit("/", 1)[1]
        with self._admin() as admin:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )

    def unblock(self, url: str) -> None:
        """Accept connections to the database of ``url`` again."""
        name = url.rsplit("/", 1)[1]
        with self._admin() as admin:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')

    def close(self) -> None:
        """Wait for the background work (before the cluster stops)."""
        self._worker.shutdown(wait=True)


def _as_cluster_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", _CLUSTER_USER, "--", *argv] if os.geteuid() == 0 else argv


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(
        _as_cluster_user(argv), capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stdout}{done.stderr}")


def _cluster_directory() -> Path:
    directory = Path(tempfile.mkdtemp(prefix="geoattest-pg-"))
    if os.geteuid() == 0:
        account = pwd.getpwnam(_CLUSTER_USER)
        os.chown(directory, account.pw_uid, account.pw_gid)
    return directory


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Create and start a cluster for the block; stop it and delete its files afterwards."""
    bindir = postgres_bindir()
    directory = _cluster_directory()
    data = directory / "data"
    try:
        _run(
            [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", SUPERUSER,
             "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            "initdb",
        )  # fmt: skip
        server = _start(bindir, directory)
        try:
            yield server
        finally:
            server.close()
            stop = [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]
            _run(stop, "pg_ctl stop")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _start(bindir: Path, directory: Path) -> PostgresServer:
    """``pg_ctl start`` on a free port, retried on another port if one was taken meanwhile."""
    options = (
        "-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
        f"-c full_page_writes=off -c timezone={SERVER_TIMEZONE} -k {directory}"
    )
    log = directory / "postgres.log"
    for attempt in range(_START_ATTEMPTS):
        port = free_port()
        try:
            _run(
                [str(bindir / "pg_ctl"), "-D", str(directory / "data"), "-l", str(log),
                 "-o", f"-p {port} {options}", "-w", "-t", "30", "start"],
                "pg_ctl start",
            )  # fmt: skip
        except RuntimeError:
            text = log.read_text(errors="replace") if log.exists() else ""
            if "could not bind" in text and attempt < _START_ATTEMPTS - 1:
                continue
            raise RuntimeError(f"PostgreSQL did not start; its log:\n{text[-3000:]}") from None
        return PostgresServer(port=port, directory=directory)
    raise AssertionError("unreachable")
