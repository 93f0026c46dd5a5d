"""``geoattest log …`` (the transparency log: sign now, rotate its key, print its keys) and
``geoattest audit verify`` (the log and what it vouches for, against its checkpoints).

``audit verify`` exits (the shell's one table) 0 when everything holds, 2 when something was
changed or removed (each finding printed), 3 when the database or a key file cannot be read, 1
on a usage error.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from geoattest.cli import EXIT_REFUSED, EXIT_UNREADABLE, build_settings, reports_errors
from geoattest.errors import GeoattestError

if TYPE_CHECKING:
    from sqlalchemy import Engine

EXIT_BROKEN = EXIT_REFUSED


@click.group("log")
def log_group() -> None:
    """The verifier's transparency log: checkpoints and their signing keys."""


@log_group.command("checkpoint")
@click.option("--db", "database_url", help="SQLAlchemy database URL.")
@click.option("--keys-dir", "verifier_keys_dir", type=click.Path(path_type=Path))
@click.pass_context
@reports_errors
def checkpoint(ctx: click.Context, /, **flags: object) -> None:
    """Sequence queued entries and sign a checkpoint now (the beat task does it every minute)."""
    from verifier.engine.runtime import log_keyring
    from verifier.storage.log import TransparencyLog

    settings = build_settings(ctx, **flags)
    engine = _engine(settings.database_url)
    log = TransparencyLog(engine, origin=settings.log_origin)
    keys = log_keyring(settings)
    now = dt.datetime.now(dt.UTC)
    keys.ensure(now)
    while log.sequence(now):
        pass
    signed = log.sign(keys.active(), now)
    head = log.head(now)
    click.echo(f"log {head.origin}: {head.size} entries, root {head.root.hex()}")
    click.echo("checkpoint signed" if signed else "no new entries: the last checkpoint stands")


@log_group.command("keys")
@click.argument("action", type=click.Choice(["show", "rotate"]))
@click.option("--db", "database_url", help="SQLAlchemy database URL (rotate logs the rotation).")
@click.option("--keys-dir", "verifier_keys_dir", type=click.Path(path_type=Path))
@click.pass_context
@reports_errors
def keys(ctx: click.Context, /, action: str, **flags: object) -> None:
    """``show``: print the log's public keys (JWKS: what auditors pass as --verifier-key).
    ``rotate``: next key becomes active (the old one stays published for ever), logged."""
    from verifier.core.log_entry import AuditAction, AuditEntry
    from verifier.engine.runtime import log_keyring, verifier_id_of
    from verifier.storage.log import TransparencyLog

    settings = build_settings(ctx, **flags)
    ring = log_keyring(settings)
    now = dt.datetime.now(dt.UTC)
    ring.ensure(now)
    if action == "rotate":
        old = ring.active().kid
        new = ring.rotate(now)
        entry = AuditEntry(
            action=AuditAction.LOG_KEY_ROTATED,
            at=now,
            actor=f"operator@{verifier_id_of(settings)}",
            subject=new,
            details={"retired": old},
        )
        TransparencyLog(_engine(settings.database_url), origin=settings.log_origin).append(
            [entry], now
        )
        click.echo(f"log key rotated: {old} retired (still published), {new} signs", err=True)
    click.echo(json.dumps(ring.jwks(now), indent=2))


@click.group()
def audit() -> None:
    """Audit what the verifier stored against its own signed checkpoints."""


@audit.command("verify")
@click.option("--db", "database_url", help="SQLAlchemy database URL.")
@click.option(
    "--verifier-key",
    "key_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The log's public keys (JWKS from /v1/log/keys, a JWK or PEM). Default: the keyring "
    "in verifier_keys_dir (an auditor should bring the published keys instead).",
)
@click.option("--keys-dir", "verifier_keys_dir", type=click.Path(path_type=Path))
@click.option(
    "--checkpoint",
    "checkpoint_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A checkpoint kept outside the database (JWS or the /v1/log/checkpoint JSON).",
)
@click.pass_context
def audit_verify(
    ctx: click.Context, /, key_file: Path | None, checkpoint_file: Path | None, **flags: object
) -> None:
    """Check every checkpoint signature, every entry against the checkpoints' roots, and every
    logged record and fold against what is stored: a modified or deleted entry is found."""
    from geoattest.db import make_engine
    from verifier.core.jwk import parse_public_keys
    from verifier.engine.runtime import log_keyring
    from verifier.storage.audit import audit_log

    settings = build_settings(ctx, **flags)
    try:
        if key_file is not None:
            keys = parse_public_keys(key_file.read_bytes())
        else:
            now = dt.datetime.now(dt.UTC)
            keys = {key.kid: key.public for key in log_keyring(settings).published(now)}
        external = _checkpoint_text(checkpoint_file) if checkpoint_file else None
        engine = make_engine(settings.database_url)
        report = audit_log(
            engine,
            keys,
            now=dt.datetime.now(dt.UTC),
            retention=dt.timedelta(days=settings.record_retention_days),
            external=external,
        )
    except (OSError, GeoattestError) as e:
        message = e.message if isinstance(e, GeoattestError) else str(e)
        click.echo(f"error: cannot read the input: {message}", err=True)
        sys.exit(EXIT_UNREADABLE)
    click.echo(f"log {report.origin or '(none)'}: {report.entries} entries")
    click.echo(
        f"checkpoints verified: {report.checkpoints}; records checked: "
        f"{report.records_checked}; folds checked: {report.folds_checked}; expired: "
        f"{report.expired}"
    )
    for note in report.notes:
        click.echo(f"note: {note}")
    for problem in report.problems:
        click.echo(f"FAILED: {problem}")
    if not report.intact:
        sys.exit(EXIT_BROKEN)
    click.echo("audit: intact")


def _checkpoint_text(path: Path) -> str:
    text = path.read_text().strip()
    if text.startswith("{"):
        body = json.loads(text)
        return str(body["checkpoint"])
    return text


def _engine(url: str) -> Engine:
    from geoattest.db import make_engine, migrate

    engine = make_engine(url)
    migrate(engine)
    return engine
