"""``geoattest keys …``: attestation-gated release of model keys.

``seal`` and ``serve`` run at the key service (they read ``keys_dir``); ``fetch`` and ``open``
run *as the workload* on an attested node: the token the agent issues names the executable of
the process that runs them.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import click
import waitress

from geoattest.cli import OutputPath, build_settings, listening, reports_errors
from geoattest.errors import NotFound
from geoattest.private_files import create_private_file

log = logging.getLogger(__name__)

_FILE = click.Path(dir_okay=False, path_type=Path)
_OUT = OutputPath()
_DIR = click.Path(file_okay=False, path_type=Path)


@click.group()
def keys() -> None:
    """Model keys released only to attested workloads inside their zones."""


@keys.command("seal")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=_OUT, required=True, help="The sealed file to write.")
@click.option("--key-id", required=True, help="The model key (created if it does not exist).")
@click.option("--zone", "zones", multiple=True, help="Zone the key is bound to (new keys).")
@click.option("--workload", "workloads", multiple=True, help="Executable SHA-256 (hex) allowed.")
@click.option(
    "--min-tier",
    type=click.Choice(["affirming", "warning"]),
    default="affirming",
    show_default=True,
)
@click.option("--keys-dir", "keys_dir", type=_DIR, help="The key service's key directory.")
@click.pass_context
@reports_errors
def seal_command(
    ctx: click.Context, /, model: Path, output: Path, key_id: str, zones: tuple[str, ...],
    workloads: tuple[str, ...], min_tier: str, **flags: object,
) -> None:  # fmt: skip
    """Encrypt MODEL with key K (AES-256-GCM: [IV][ciphertext][tag]); K stays in the keys dir."""
    from keyrelease.keystore import KeyStore
    from keyrelease.sealing import seal

    settings = build_settings(ctx, **flags)
    store = KeyStore(settings.keys_dir)
    try:
        key = store.get(key_id)
        if zones or workloads:
            click.echo(
                f"key {key_id} exists: its bindings are kept ({sorted(key.zones)})", err=True
            )
    except NotFound:
        if not zones:
            raise click.UsageError(f"key {key_id} is new: bind it to at least one --zone") from None
        key = store.create(
            key_id,
            zones=frozenset(zones),
            workloads=frozenset(bytes.fromhex(w) for w in workloads),
            min_tier=min_tier,
            now=dt.datetime.now(dt.UTC),
        )
    size = seal(model, output, key.key)
    click.echo(f"sealed {model} -> {output} ({size} bytes) with key {key_id}")


@keys.command("serve")
@click.option("--host", "keys_host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", "keys_port", type=int, help="Port (default 8893).")
@click.option("--verifier", "verifier_url", help="The verifier (JWKS and revocation status).")
@click.option("--keys-dir", "keys_dir", type=_DIR, help="The key directory.")
@click.option("--db", "keys_database_url", help="Where releases and refusals are recorded.")
@click.option("--audience", "keys_audience", help="The audience tokens must name.")
@click.pass_context
@reports_errors
def serve(ctx: click.Context, /, **flags: object) -> None:
    """Release keys to valid PoG tokens for their zones, wrapped to the caller's key."""
    from keyrelease.app import create_app

    settings = build_settings(ctx, **flags)
    app = create_app(settings)
    log.info("key service on %s:%d", settings.keys_host, settings.keys_port)
    with listening("the key service", settings.keys_host, settings.keys_port):
        waitress.serve(
            app, host=settings.keys_host, port=settings.keys_port, ident="geoattest-keys"
        )


def _fetch(settings_flags: dict[str, object], ctx: click.Context, key_id: str) -> bytes:
    from geoattest.key_fetch import fetch_model_key

    settings = build_settings(ctx, **settings_flags)
    if settings.workload_socket is None:
        raise click.UsageError("no workload socket: give --socket or GEOATTEST_WORKLOAD_SOCKET")
    return fetch_model_key(
        socket_path=settings.workload_socket,
        service_url=settings.keys_url,
        key_id=key_id,
        audience=settings.keys_audience,
    )


@keys.command("fetch")
@click.option("--key-id", required=True)
@click.option("-o", "--output", type=_OUT, required=True, help="Where to write the key (0600).")
@click.option("--service", "keys_url", help="The key service's URL.")
@click.option("--socket", "workload_socket", type=_FILE, help="The agent's workload socket.")
@click.option("--audience", "keys_audience", help="The key service's audience.")
@click.pass_context
@reports_errors
def fetch(ctx: click.Context, /, key_id: str, output: Path, **flags: object) -> None:
    """Fetch key K for this process (attested, inside K's zones) and write it to OUTPUT."""
    key = _fetch(flags, ctx, key_id)
    if not create_private_file(output, key):
        raise click.UsageError(f"{output} exists; refusing to overwrite a key file")
    click.echo(f"key {key_id} written to {output}")


@keys.command("open")
@click.argument("sealed", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=_OUT, required=True, help="The decrypted model (0600).")
@click.option("--key-id", help="Fetch this key for this process (through the agent).")
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--service", "keys_url", help="The key service's URL.")
@click.option("--socket", "workload_socket", type=_FILE, help="The agent's workload socket.")
@click.option("--audience", "keys_audience", help="The key service's audience.")
@click.pass_context
@reports_errors
def open_command(
    ctx: click.Context, /, sealed: Path, output: Path, key_id: str | None, key_file: Path | None,
    **flags: object,
) -> None:  # fmt: skip
    """Decrypt SEALED with key K, fetched now (--key-id) or read from --key-file; the key is
    never written when fetched here."""
    from keyrelease.sealing import open_sealed

    if (key_id is None) == (key_file is None):
        raise click.UsageError("give exactly one of --key-id and --key-file")
    key = key_file.read_bytes() if key_file is not None else _fetch(flags, ctx, str(key_id))
    size = open_sealed(sealed, output, key)
    click.echo(f"opened {sealed} -> {output} ({size} bytes)")
