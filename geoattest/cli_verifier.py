"""``geoattest verifier …``: the API, the Celery worker and beat, and the mTLS material."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from pathlib import Path

import click
import waitress

from geoattest.cli import EXIT_BUG, build_settings, fail, listening, reports_errors
from geoattest.cli_types import PORT
from geoattest.errors import GeoattestError
from geoattest.settings import Settings

log = logging.getLogger(__name__)


API_THREADS = 16  # per API process; dashboard event streams each hold one (docs/dashboard.md)
DEFAULT_POOL_PER_CORE = 3  # measured: 2 processes on 2 cores capped near 350 rounds/s


@click.group()
def verifier() -> None:
    """The verifier: continuous attestation of enrolled agents (Celery on Redis)."""


@verifier.command("serve")
@click.option("--host", "verifier_host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", "verifier_port", type=PORT, help="Port (default 8891).")
@click.option("--db", "database_url", help="SQLAlchemy database URL.")
@click.option("--redis", "redis_url", help="Redis URL (default redis://127.0.0.1:6379/0).")
@click.option("--registrar", "registrar_url", help="Registrar base URL.")
@click.option(
    "--ek-ca",
    "ek_ca_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The verifier's own EK trust store (manufacturer CA certificates).",
)
@click.option(
    "--registrar-signing-key",
    "registrar_signing_key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="PEM of the registrar's public signing key (pinned).",
)
@click.option(
    "--processes",
    "verifier_processes",
    type=click.IntRange(1, 64),
    help="Processes serving the API on the port (default 1; see docs/deploy.md).",
)
@click.pass_context
@reports_errors
def serve(ctx: click.Context, /, **flags: object) -> None:
    """Serve the verifier's /v1 API (policies, agents, events) until interrupted.

    With --processes N > 1 the port is bound once and shared by N forked processes, each with
    its own app (geoattest.prefork); /metrics sums them."""
    settings = build_settings(ctx, **flags)
    processes = settings.verifier_processes or 1
    if processes > 1:
        _serve_processes(settings, processes)
        return
    from verifier.app import create_app

    app = create_app(settings)
    log.info("verifier API on %s:%d", settings.verifier_host, settings.verifier_port)
    with listening("the verifier API", settings.verifier_host, settings.verifier_port):
        waitress.serve(
            app,
            host=settings.verifier_host,
            port=settings.verifier_port,
            ident="geoattest-verifier",
            threads=API_THREADS,
        )


def _serve_processes(settings: Settings, processes: int) -> None:
    """The API from ``processes`` forked processes: migrations and key rings are made once,
    here, before any fork (so children never race to create them)."""
    from verifier.metrics_export import prepare_multiprocess_dir

    prepare_multiprocess_dir(None)  # before prometheus_client is imported: counts are summed
    from prometheus_client import multiprocess

    from geoattest.db import make_engine, migrate
    from geoattest.prefork import listen, serve_processes
    from verifier.app import create_app
    from verifier.engine.runtime import log_keyring
    from verifier.tokens.wiring import token_keyring

    engine = make_engine(settings.database_url)
    migrate(engine)
    engine.dispose()
    now = dt.datetime.now(dt.UTC)
    log_keyring(settings).ensure(now)
    token_keyring(settings).ensure(now)
    with listening("the verifier API", settings.verifier_host, settings.verifier_port):
        sock = listen(settings.verifier_host, settings.verifier_port)
    log.info(
        "verifier API on %s:%d (%d processes)",
        settings.verifier_host,
        settings.verifier_port,
        processes,
    )
    with sock:
        status = serve_processes(
            lambda: create_app(settings),
            sock,
            processes=processes,
            threads=API_THREADS,
            ident="geoattest-verifier",
            exit_status=_child_status,
            on_exit=multiprocess.mark_process_dead,
        )
    if status:
        sys.exit(status)


def _child_status(error: BaseException) -> int:
    """An API process's exit status for what it raised (as ``reports_errors`` would say)."""
    if isinstance(error, GeoattestError):
        try:
            fail(error)
        except SystemExit as e:
            return e.code if isinstance(e.code, int) else EXIT_BUG
    log.error("verifier process failed", exc_info=error)
    return EXIT_BUG


@verifier.command("push-serve")
@click.option("--host", "push_host", help="Address of the push listener (default 127.0.0.1).")
@click.option("--port", "push_port", type=PORT, help="Port (default 8894).")
@click.option("--db", "database_url", help="SQLAlchemy database URL.")
@click.option("--redis", "redis_url", help="Redis URL.")
@click.option(
    "--tls-dir",
    "verifier_tls_dir",
    type=click.Path(path_type=Path),
    help="Directory with the verifier's client CA (it issues the listener's certificate).",
)
@click.option(
    "--processes",
    "push_processes",
    type=click.IntRange(1, 64),
    help="Processes serving the listener on its port (default 1; see docs/deploy.md).",
)
@click.pass_context
@reports_errors
def push_serve(ctx: click.Context, /, **flags: object) -> None:
    """Serve the push listener (mTLS): push agents ask for challenges and post evidence (ADR 19).

    Only agents added with mode push, presenting their registered certificate, are served."""
    settings = build_settings(ctx, **flags)
    from geoattest.db import make_engine, migrate
    from verifier.push_serve import serve_push

    engine = make_engine(settings.database_url)
    migrate(engine)  # as ``verifier serve``: it may be the first service of the database up
    engine.dispose()
    with listening("the push listener", settings.push_host, settings.push_port):
        status = serve_push(settings, exit_status=_child_status)
    if status:
        sys.exit(status)


@verifier.command("worker")
@click.option("--db", "database_url", help="SQLAlchemy database URL.")
@click.option("--redis", "redis_url", help="Redis URL.")
@click.option(
    "--tls-dir",
    "verifier_tls_dir",
    type=click.Path(path_type=Path),
    help="Directory with the verifier's client certificate and key.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=lambda: DEFAULT_POOL_PER_CORE * (os.cpu_count() or 1),
    show_default=f"{DEFAULT_POOL_PER_CORE} per core",
    help="Worker pool processes. A round waits on its agent and on its commit, so three per "
    "core keep the cores busy (docs/benchmarks.md, Fleet).",
)
@click.option("--beat", is_flag=True, help="Also run the round scheduler in this worker.")
@click.pass_context
@reports_errors
def worker(ctx: click.Context, /, concurrency: int, beat: bool, **flags: object) -> None:
    """Run rounds (Celery worker); with --beat also dispatch them (one beat per fleet).

    Exits 3 at once when Redis cannot be reached at start; once running, a lost Redis is
    retried with backoff (logged) and the worker carries on when it is back."""
    from verifier.metrics_export import prepare_multiprocess_dir

    settings = build_settings(ctx, **flags)
    if settings.worker_metrics_port is not None:  # before prometheus_client is imported
        prepare_multiprocess_dir(settings.worker_metrics_dir)
    from verifier.storage.redis_auth import check_redis_requires_auth
    from verifier.storage.redis_target import redis_target
    from verifier.worker import create_celery, require_redis

    target = redis_target(settings)
    require_redis(target)
    check_redis_requires_auth(target, allow_unauthenticated=settings.redis_allow_unauthenticated)
    app = create_celery(settings)
    if settings.worker_metrics_port is not None:
        _serve_worker_metrics(settings)
    argv = ["worker", f"--concurrency={concurrency}", "--loglevel", settings.log_level,
            "--without-gossip", "--without-mingle"]  # fmt: skip
    if beat:
        argv += ["--beat", "--schedule", _beat_schedule_file(settings)]
    app.worker_main(argv)


@verifier.command("beat")
@click.option("--redis", "redis_url", help="Redis URL.")
@click.option(
    "--tls-dir",
    "verifier_tls_dir",
    type=click.Path(path_type=Path),
    help="The verifier's TLS directory (beat keeps its schedule file beside it).",
)
@click.pass_context
@reports_errors
def beat(ctx: click.Context, /, **flags: object) -> None:
    """Run the round scheduler alone (Celery beat): dispatch, watchdog, reconcile, compaction.

    Exactly one beat per fleet, as its own process or inside one worker (``worker --beat``).
    Beat holds no state that matters: killed and restarted, it goes on from Redis."""
    from verifier.storage.redis_auth import check_redis_requires_auth
    from verifier.storage.redis_target import redis_target
    from verifier.worker import create_celery, require_redis

    settings = build_settings(ctx, **flags)
    target = redis_target(settings)
    require_redis(target)
    check_redis_requires_auth(target, allow_unauthenticated=settings.redis_allow_unauthenticated)
    app = create_celery(settings)
    app.start(["beat", "--loglevel", settings.log_level, "--schedule",
               _beat_schedule_file(settings)])  # fmt: skip


def _serve_worker_metrics(settings: Settings) -> None:
    """The pool's summed metrics on ``worker_metrics_port``, for viewer API keys."""
    from geoattest.access.store import AccessStore
    from geoattest.db import make_engine, session_factory
    from verifier.metrics_export import mark_pool_processes_dead, metrics_app, serve_in_thread

    assert settings.worker_metrics_port is not None  # noqa: S101  # checked by the caller
    mark_pool_processes_dead()
    store = AccessStore(session_factory(make_engine(settings.database_url)))
    port = serve_in_thread(
        metrics_app(store), settings.worker_metrics_host, settings.worker_metrics_port
    )
    click.echo(f"worker metrics on http://{settings.worker_metrics_host}:{port}/metrics")


def _beat_schedule_file(settings: Settings) -> str:
    return str(settings.verifier_tls_dir.parent / "celerybeat")


@verifier.command("init-tls")
@click.option(
    "--tls-dir",
    "verifier_tls_dir",
    type=click.Path(path_type=Path),
    help="Where to write the client CA, certificate and key.",
)
@click.pass_context
@reports_errors
def init_tls(ctx: click.Context, /, **flags: object) -> None:
    """Create the verifier's client CA and client certificate (agents trust the CA). Idempotent."""
    from geoattest.tls_material import ensure_verifier_client_tls

    settings = build_settings(ctx, **flags)
    paths = ensure_verifier_client_tls(settings.verifier_tls_dir)
    click.echo(f"client CA (give it to agents as --verifier-ca): {paths.ca_cert}")
    click.echo(f"client certificate: {paths.client_cert}")


@verifier.group("keys")
def keys() -> None:
    """The verifier's token signing keys (next, active, retired), in verifier_keys_dir."""


_KEYS_DIR = click.option(
    "--keys-dir",
    "verifier_keys_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The verifier's key directory (default var/verifier/keys).",
)


@keys.command("init")
@_KEYS_DIR
@click.pass_context
@reports_errors
def keys_init(ctx: click.Context, /, **flags: object) -> None:
    """Create the token keyring (an active and a next key) if it does not exist. Idempotent."""
    from verifier.tokens.wiring import token_keyring

    keyring = token_keyring(build_settings(ctx, **flags))
    keyring.ensure(dt.datetime.now(dt.UTC))
    click.echo(f"token keyring in {keyring.directory}; active key {keyring.active().kid}")


@keys.command("rotate")
@_KEYS_DIR
@click.pass_context
@reports_errors
def keys_rotate(ctx: click.Context, /, **flags: object) -> None:
    """The next key signs from now on; the old one stays published until its tokens expired.
    Running API processes see the change at their next signature."""
    from verifier.tokens.wiring import token_keyring

    keyring = token_keyring(build_settings(ctx, **flags))
    click.echo(f"active key is now {keyring.rotate(dt.datetime.now(dt.UTC))}")


@keys.command("show")
@_KEYS_DIR
@click.option("--json", "as_json", is_flag=True, help="Print the JWKS relying parties get.")
@click.pass_context
@reports_errors
def keys_show(ctx: click.Context, /, as_json: bool, **flags: object) -> None:
    """List the published keys (never a private key)."""
    from verifier.tokens.wiring import token_keyring

    keyring = token_keyring(build_settings(ctx, **flags))
    now = dt.datetime.now(dt.UTC)
    if as_json:
        click.echo(json.dumps(keyring.jwks(now), indent=2))
        return
    for key in keyring.published(now):
        until = key.publish_until.isoformat() if key.publish_until else "-"
        click.echo(
            f"{key.state.value:<8} {key.kid}  created {key.created_at.isoformat()}  "
            f"published until {until}"
        )


def _register_fleet_commands() -> None:
    from geoattest.cli_fleet import agents, events, policies

    for command in (agents, policies, events):
        verifier.add_command(command)


_register_fleet_commands()
