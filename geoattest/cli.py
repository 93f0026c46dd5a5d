"""The ``geoattest`` command: a thin layer that parses flags, builds settings, calls services.

Every command exits with a status of one table (``EXIT_TABLE``, also in ``geoattest --help``,
the README and docs/adr/0012-cli-exit-codes.md); each code means one thing for every command.
Errors reach the user as one line, ``error: <code>: <message>``, never as a traceback: the root
group turns our errors, click's usage errors and operating-system errors into that line and its
status, and an unexpected exception (a bug) into exit 5 (``--traceback`` shows it).
"""

from __future__ import annotations

import errno
import functools
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import click
from pydantic import ValidationError

from geoattest.errors import ConfigurationError, GeoattestError, PortInUse, ReachabilityError
from geoattest.log import configure_logging
from geoattest.settings import Settings, load_settings

P = ParamSpec("P")
R = TypeVar("R")
log = logging.getLogger(__name__)

EXIT_DONE = 0
EXIT_CONFIG = 1  # bad configuration or usage: nothing was asked of anyone
EXIT_REFUSED = 2  # the answer is no: refused, failed evidence, failed verification, outside
EXIT_UNREACHABLE = 3  # a part could not be reached or used, an input could not be read
EXIT_UNREADABLE = EXIT_UNREACHABLE
EXIT_FINDINGS = 4  # a qualified yes: verified with findings, uncertain
EXIT_BUG = 5  # an internal error: a bug in geoattest

EXIT_TABLE = """\b
Exit status (the same for every command):
  0  done; verified (verify-bundle, report, audit verify, token verify); inside (zones check)
  1  bad configuration or usage: a bad flag or setting, a URL without a scheme, a database
     URL that does not parse, an output file in a missing directory, a port in use
  2  refused: a 4xx answer or failed evidence (the error code is printed); a bundle, log or
     token that failed verification; outside every zone (zones check)
  3  unreachable or unreadable: the verifier, registrar, Redis, database, TPM or GNSS could
     not be reached or did not answer as that service (wrong URL, http/https mismatch); an
     input that cannot be read (a bundle, key or CA file; the zones file of zones check)
  4  verified with findings (verify-bundle, report: the window holds failures, gaps or
     outside/uncertain decisions); uncertain (zones check)
  5  internal error: a bug in geoattest (run again with --traceback and report it)"""


def fail(error: GeoattestError) -> NoReturn:
    """Print ``error: <code>: <message>`` on stderr and exit with the table's status for it."""
    click.echo(f"error: {error.code}: {error.message}", err=True)
    if isinstance(error, ConfigurationError):
        sys.exit(EXIT_CONFIG)
    if isinstance(error, ReachabilityError):
        sys.exit(EXIT_UNREACHABLE)
    sys.exit(EXIT_REFUSED)


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn our errors into one clear stderr line and a documented exit status (the root group
    does the same for commands without this decorator)."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except GeoattestError as e:
            fail(e)

    return wrapper


def _os_error(error: OSError) -> NoReturn:
    where = f"{error.filename}: " if error.filename else ""
    reason = error.strerror or str(error)
    if isinstance(error, ConnectionError | TimeoutError):
        click.echo(f"error: unreachable: {where}{reason}", err=True)
        sys.exit(EXIT_UNREACHABLE)
    hint = " (does its directory exist?)" if isinstance(error, FileNotFoundError) else ""
    click.echo(f"error: os_error: {where}{reason}{hint}", err=True)
    sys.exit(EXIT_CONFIG)


class _UsageError(click.UsageError):
    exit_code = EXIT_CONFIG

    @classmethod
    def of(cls, error: click.UsageError) -> click.UsageError:
        if isinstance(error, cls):
            return error
        return cls(error.format_message(), error.ctx)


class _Shell(click.Group):
    """The root group: every error of every subcommand leaves as one line and a table status."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,  # noqa: ANN401  # click's own signature
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as e:
            raise _UsageError.of(e) from e

    def invoke(self, ctx: click.Context) -> Any:  # noqa: ANN401  # click's own signature
        try:
            return super().invoke(ctx)
        except click.UsageError as e:  # click's own code is 2, which here means "refused"
            raise _UsageError.of(e) from e
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except GeoattestError as e:
            fail(e)
        except OSError as e:
            _os_error(e)
        except Exception as e:
            if ctx.params.get("show_traceback"):
                raise
            log.debug("internal error", exc_info=True)
            click.echo(
                f"error: internal_error: {type(e).__name__}: {e} (a bug in geoattest: run "
                "again with 'geoattest --traceback ...' and report what it prints)",
                err=True,
            )
            sys.exit(EXIT_BUG)


class OutputPath(click.Path):
    """A file the command writes: refused at once (exit 1) when its directory does not exist,
    before any work is done. ``-`` (stdout) passes where ``allow_dash`` is set."""

    def __init__(self, *, allow_dash: bool = False) -> None:
        super().__init__(dir_okay=False, path_type=Path, allow_dash=allow_dash)

    def convert(
        self,
        value: Any,  # noqa: ANN401  # click's own signature
        param: click.Parameter | None,
        ctx: click.Context | None,
    ) -> Any:  # noqa: ANN401  # click's own signature
        path = super().convert(value, param, ctx)
        parent = Path(str(path)).parent
        if str(path) != "-" and not parent.is_dir():
            self.fail(f"directory {parent} does not exist", param, ctx)
        return path


@contextmanager
def listening(service: str, host: str, port: int) -> Iterator[None]:
    """Around a server's start: an address in use becomes ``PortInUse`` naming it."""
    try:
        yield
    except OSError as e:
        if e.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
            raise PortInUse(
                f"{service} cannot listen on {host}:{port}: {e.strerror} (another process "
                "has it? choose another with --port or --host)"
            ) from e
        raise


def build_settings(ctx: click.Context, **overrides: Any) -> Settings:  # noqa: ANN401
    """Settings from ``--config``, ``GEOATTEST_*`` and the flags (flags win); logging configured."""
    config_file: Path | None = ctx.find_root().params.get("config")
    try:
        settings = load_settings(config_file, **overrides)
    except ValidationError as e:
        raise ConfigurationError(f"bad settings: {settings_problems(e)}") from e
    except (ValueError, FileNotFoundError) as e:
        raise ConfigurationError(f"bad settings: {e}") from e
    configure_logging(settings.log_level, settings.log_format)
    return settings


def settings_problems(error: ValidationError) -> str:
    """The settings' problems on one line: ``name: message`` for up to three of them."""
    problems = [
        f"{'.'.join(str(part) for part in item['loc']) or 'settings'}: "
        + str(item["msg"]).removeprefix("Value error, ")
        for item in error.errors()[:3]
    ]
    more = error.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


@click.group(cls=_Shell, epilog=EXIT_TABLE)
@click.option(
    "--traceback",
    "show_traceback",
    is_flag=True,
    help="Show the Python traceback of an internal error (for a bug report).",
)
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="GEOATTEST_CONFIG",
    help="TOML settings file (flags and GEOATTEST_* variables override it).",
)
@click.version_option(package_name="geoattest")
def main(config: Path | None, show_traceback: bool) -> None:
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
