"""``geoattest verifier …``: the API, the Celery worker and beat, and the mTLS material."""

from __future__ import annotations

import logging
from pathlib import Path

import click
import waitress

from geoattest.cli import build_settings, reports_errors
from geoattest.cli_types import PORT

log = logging.getLogger(__name__)


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
@click.pass_context
@reports_errors
def serve(ctx: click.Context, /, **flags: object) -> None:
    """Serve the verifier's /v1 API (policies, agents, events) until interrupted."""
    from verifier.app import create_app

    settings = build_settings(ctx, **flags)
    app = create_app(settings)
    log.info("verifier API on %s:%d", settings.verifier_host, settings.verifier_port)
    waitress.serve(
        app, host=settings.verifier_host, port=settings.verifier_port, ident="geoattest-verifier"
    )


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
    default=2,
    show_default=True,
    help="Worker processes (one per core is a good start).",
)
@click.option("--beat", is_flag=True, help="Also run the round scheduler in this worker.")
@click.pass_context
@reports_errors
def worker(ctx: click.Context, /, concurrency: int, beat: bool, **flags: object) -> None:
    """Run rounds (Celery worker); with --beat also dispatch them (one beat per fleet)."""
    from verifier.storage.redis_auth import check_redis_requires_auth
    from verifier.worker import create_celery

    settings = build_settings(ctx, **flags)
    check_redis_requires_auth(
        settings.redis_url, allow_unauthenticated=settings.redis_allow_unauthenticated
    )
    app = create_celery(settings)
    argv = ["worker", f"--concurrency={concurrency}", "--loglevel", settings.log_level,
            "--without-gossip", "--without-mingle"]  # fmt: skip
    if beat:
        argv += ["--beat", "--schedule", str(settings.verifier_tls_dir.parent / "celerybeat")]
    app.worker_main(argv)


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
