"""``geoattest api-keys …``: create, revoke and list the API keys of a service's database.

Run it with the database of the service the key is for (``--db``, ``GEOATTEST_DATABASE_URL``):
the registrar's and the verifier's keys are separate. A key is printed once, when created.
"""

from __future__ import annotations

import datetime as dt

import click

from geoattest.access.keys import Role
from geoattest.access.store import AccessStore
from geoattest.cli import build_settings, reports_errors
from geoattest.db import check_private_database, make_engine, migrate, session_factory


@click.group("api-keys")
def api_keys() -> None:
    """API keys (bearer credentials with a role) for the registrar's and verifier's routes."""


def _store(ctx: click.Context, flags: dict[str, object]) -> AccessStore:
    settings = build_settings(ctx, **flags)
    engine = make_engine(settings.database_url)
    check_private_database(settings.database_url)
    migrate(engine)
    return AccessStore(session_factory(engine))


@api_keys.command("create")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--name", required=True, help="Who or what holds the key (unique).")
@click.option("--db", "database_url", help="SQLAlchemy URL of the service's database.")
@click.pass_context
@reports_errors
def create(ctx: click.Context, /, role: str, name: str, **flags: object) -> None:
    """Create a key and print it once (store it now: only its hash is kept)."""
    key = _store(ctx, flags).create(name, Role(role), dt.datetime.now(dt.UTC))
    click.echo(key)
    click.echo(f"API key {name!r} ({role}) created; it is not shown again.", err=True)


@api_keys.command("revoke")
@click.argument("name")
@click.option("--db", "database_url", help="SQLAlchemy URL of the service's database.")
@click.pass_context
@reports_errors
def revoke(ctx: click.Context, /, name: str, **flags: object) -> None:
    """Revoke a key at once (its calls are refused from the next request on)."""
    _store(ctx, flags).revoke(name, dt.datetime.now(dt.UTC))
    click.echo(f"API key {name!r} revoked")


@api_keys.command("list")
@click.option("--db", "database_url", help="SQLAlchemy URL of the service's database.")
@click.pass_context
@reports_errors
def list_keys(ctx: click.Context, /, **flags: object) -> None:
    """Names, roles and states of the keys (never the keys themselves)."""
    for key in _store(ctx, flags).all_keys():
        state = f"revoked {key.revoked_at.isoformat()}" if key.revoked_at else "active"
        click.echo(f"{key.name:<40} {key.role:<11} {key.key_id}  {state}")
