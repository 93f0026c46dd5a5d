"""``geoattest registrar …``: run the enrolment service."""

from __future__ import annotations

import logging
from pathlib import Path

import click
import waitress

from geoattest.cli import build_settings, listening, reports_errors
from geoattest.cli_types import PORT

log = logging.getLogger(__name__)


@click.group()
def registrar() -> None:
    """The registrar: enrols nodes whose TPM EK is allowlisted."""


@registrar.command("serve")
@click.option(
    "--ek-ca",
    "ek_ca_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory of allowlisted EK manufacturer CA certificates (PEM or DER).",
)
@click.option(
    "--pins",
    "ek_pins_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML purchase-order pins; when given, a valid chain alone is not enough.",
)
@click.option("--host", "registrar_host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", "registrar_port", type=PORT, help="Port to listen on (default 8890).")
@click.option("--db", "database_url", help="SQLAlchemy database URL (default SQLite under var/).")
@click.option(
    "--state-dir",
    "registrar_state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Owner-only directory of the enrolment key (default var/registrar, created 0700).",
)
@click.option("--threads", default=8, show_default=True, help="Worker threads.")
@click.pass_context
@reports_errors
def serve(ctx: click.Context, /, threads: int, **flags: object) -> None:
    """Serve the registrar's /v1 API until interrupted."""
    from registrar.app import create_app  # keep `geoattest --help` light

    settings = build_settings(ctx, **flags)
    app = create_app(settings)
    log.info("registrar listening on %s:%d", settings.registrar_host, settings.registrar_port)
    with listening("the registrar", settings.registrar_host, settings.registrar_port):
        waitress.serve(
            app,
            host=settings.registrar_host,
            port=settings.registrar_port,
            threads=threads,
            ident="geoattest-registrar",
        )


@registrar.command("signing-key")
@click.option(
    "--state-dir",
    "registrar_state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The registrar's state directory (default var/registrar).",
)
@click.pass_context
@reports_errors
def signing_key(ctx: click.Context, /, **flags: object) -> None:
    """Print the registrar's public signing key (PEM): pin it on verifiers
    (GEOATTEST_REGISTRAR_SIGNING_KEY) and give it to auditors. Creates the key on first use."""
    from registrar.signing import RegistrarSigner

    settings = build_settings(ctx, **flags)
    signer = RegistrarSigner.load(settings.registrar_state_dir)
    click.echo(signer.public_pem(), nl=False)
    click.echo(f"key id {signer.key_id}", err=True)
