"""The ``geoattest`` command: a thin layer that parses flags, builds settings, calls services.

Exit status: 0 success; 2 refused (a 4xx error or failed evidence: the error code is printed);
3 a part could not be reached (registrar, TPM, GNSS); 1 bad configuration or usage.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from geoattest.errors import ConfigurationError, GeoattestError, ReachabilityError
from geoattest.log import configure_logging
from geoattest.settings import Settings, load_settings

P = ParamSpec("P")
R = TypeVar("R")

EXIT_REFUSED = 2
EXIT_UNREACHABLE = 3
EXIT_CONFIG = 1


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn our errors into one clear stderr line and a documented exit status."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except ConfigurationError as e:
            click.echo(f"error: {e.code}: {e.message}", err=True)
            sys.exit(EXIT_CONFIG)
        except ReachabilityError as e:
            click.echo(f"error: {e.code}: {e.message}", err=True)
            sys.exit(EXIT_UNREACHABLE)
        except GeoattestError as e:
            click.echo(f"error: {e.code}: {e.message}", err=True)
            sys.exit(EXIT_REFUSED)

    return wrapper


EXIT_VERIFY_USAGE = 4


class _VerifyUsageError(click.UsageError):
    exit_code = EXIT_VERIFY_USAGE


class VerifyingCommand(click.Command):
    """A command whose exit codes are those of a verification (``verify-bundle``, ``audit
    verify``): 0 held, 1 held with findings, 2 failed, 3 unreadable input, 4 usage error."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:
            raise _VerifyUsageError(e.message, e.ctx) from e


def build_settings(ctx: click.Context, **overrides: Any) -> Settings:  # noqa: ANN401
    """Settings from ``--config``, ``GEOATTEST_*`` and the flags (flags win); logging configured."""
    config_file: Path | None = ctx.find_root().params.get("config")
    try:
        settings = load_settings(config_file, **overrides)
    except (ValueError, FileNotFoundError) as e:
        raise click.UsageError(f"bad settings: {e}") from e
    configure_logging(settings.log_level, settings.log_format)
    return settings


@click.group()
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="GEOATTEST_CONFIG",
    help="TOML settings file (flags and GEOATTEST_* variables override it).",
)
@click.version_option(package_name="geoattest")
def main(config: Path | None) -> None:
    """geoattest: continuous remote attestation and verifiable geofencing for edge fleets."""


def _register_groups() -> None:
    # Imported here, after ``main`` exists: each group module imports ``main``'s helpers.
    from geoattest.cli_access import api_keys
    from geoattest.cli_agent import agent, agents
    from geoattest.cli_dev import dev, fleet_group
    from geoattest.cli_export import export, report, verify_bundle_command
    from geoattest.cli_keys import keys
    from geoattest.cli_log import audit, log_group
    from geoattest.cli_policy import policy
    from geoattest.cli_registrar import registrar
    from geoattest.cli_tokens import token
    from geoattest.cli_verifier import verifier
    from geoattest.cli_zones import zones

    for group in (
        registrar,
        verifier,
        agent,
        agents,
        policy,
        zones,
        api_keys,
        token,
        keys,
        log_group,
        audit,
        dev,
        fleet_group,
    ):
        main.add_command(group)
    for command in (export, verify_bundle_command, report):
        main.add_command(command)


_register_groups()
