"""``geoattest export`` (a signed residency-proof bundle of a window) and ``geoattest
verify-bundle`` (its offline verification: no database, no service).

``verify-bundle`` exits (the shell's one table, ``geoattest.cli.EXIT_TABLE``) 0 when the bundle
verifies and every agent was attested (and inside its zones) for the whole window; 4 when it
verifies but the window holds failures, gaps or outside/uncertain decisions (listed); 2 when the
bundle fails verification (the first failing file and check are named); 3 when the bundle, a key
or the CA directory cannot be read; 1 on a usage error.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeVar

import click

from geoattest.cli import (
    EXIT_FINDINGS,
    EXIT_REFUSED,
    EXIT_UNREADABLE,
    OutputPath,
    build_settings,
    reports_errors,
)
from geoattest.errors import BundleInvalid, BundleUnreadable, ConfigurationError, GeoattestError

if TYPE_CHECKING:
    from verifier.export.results import BundleVerification

EXIT_INVALID = EXIT_REFUSED
AT_MARGIN = dt.timedelta(minutes=15)


def parse_time(value: str, name: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time", param_hint=name) from e
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


@click.command("export")
@click.option("--agent", "agent_ids", multiple=True, help="Agent to export (repeatable).")
@click.option("--fleet", is_flag=True, help="Every agent of --policy or of --zone.")
@click.option("--policy", "policy_name", help="With --fleet: the agents judged by this policy.")
@click.option("--zone", "zone_id", help="With --fleet: the agents whose policy names this zone.")
@click.option("--from", "start", help="Window start (ISO 8601, UTC if no offset).")
@click.option("--to", "end", help="Window end (ISO 8601).")
@click.option("--at", "at", help="A moment to answer for: exports the 15 minutes around it.")
@click.option("-o", "--output", type=OutputPath(), required=True)
@click.option("--db", "database_url", help="SQLAlchemy database URL.")
@click.option("--registrar", "registrar_url", help="Registrar base URL.")
@click.option("--keys-dir", "verifier_keys_dir", type=click.Path(path_type=Path))
@click.option(
    "--ek-ca",
    "ek_ca_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="EK CA certificates to include the EK chain from (default: ek_ca_dir).",
)
@click.pass_context
@reports_errors
def export(
    ctx: click.Context,
    /,
    agent_ids: tuple[str, ...],
    fleet: bool,
    policy_name: str | None,
    zone_id: str | None,
    start: str | None,
    end: str | None,
    at: str | None,
    output: Path,
    **flags: object,
) -> None:
    """Export a window of evidence as a signed bundle (records, proofs, checkpoints, identity,
    policies, zones, tokens), for an auditor to verify offline with verify-bundle."""
    from geoattest.proof_export import ExportSpec, run_export

    if at is not None:
        moment = parse_time(at, "--at")
        window = (moment - AT_MARGIN, moment + AT_MARGIN)
    elif start is not None and end is not None:
        window = (parse_time(start, "--from"), parse_time(end, "--to"))
    else:
        raise click.UsageError("give --from and --to, or --at")
    if window[1] <= window[0]:
        raise click.UsageError("--to must be after --from")
    if fleet == bool(agent_ids) or (fleet and (policy_name is None) == (zone_id is None)):
        raise click.UsageError("give --agent ID, or --fleet with one of --policy or --zone")
    settings = build_settings(ctx, **flags)
    spec = ExportSpec(
        agents=agent_ids,
        policy=policy_name,
        zone=zone_id,
        start=window[0],
        end=window[1],
        at=parse_time(at, "--at") if at else None,
        output=output,
    )
    summary = run_export(settings, spec)
    click.echo(
        f"{output}: {summary.agents} agent(s), {summary.records} records, {summary.files} "
        f"files, {summary.bytes:,} bytes, signed with log key {summary.kid}"
    )


F = TypeVar("F", bound=Callable[..., object])


def _trust_options(command: F) -> F:
    """The keys an auditor verifies a bundle with (verify-bundle and report alike)."""
    for option in reversed(
        [
            click.option("--ek-ca", "ek_ca", required=True, type=click.Path(path_type=Path),
                         help="Directory of the TPM vendors' EK CA certificates you trust."),
            click.option("--verifier-key", "verifier_key", required=True,
                         type=click.Path(path_type=Path),
                         help="The verifier's published log keys (JWKS from /v1/log/keys, "
                         "JWK or PEM)."),
            click.option("--registrar-key", "registrar_key", type=click.Path(path_type=Path),
                         help="The registrar's public key, to check its signed identity "
                         "records."),
        ]
    ):  # fmt: skip
        command = option(command)
    return command


def _verified(
    bundle: Path,
    ek_ca: Path,
    verifier_key: Path,
    registrar_key: Path | None,
    at: dt.datetime | None,
) -> tuple[BundleVerification, dict[str, bytes]]:
    """Read and verify ``bundle``; exits 3 when an input cannot be read, 2 when refused."""
    from geoattest.proof_verify import load_trust
    from verifier.export.archive import read_bundle
    from verifier.export.verify import verify_bundle

    try:
        trust = load_trust(ek_ca, verifier_key, registrar_key)
        files = read_bundle(bundle)
    except (BundleUnreadable, ConfigurationError, OSError) as e:
        message = e.message if isinstance(e, GeoattestError) else str(e)
        click.echo(f"error: cannot read the input: {message}", err=True)
        sys.exit(EXIT_UNREADABLE)
    except BundleInvalid as e:
        _refused(e)
    try:
        return verify_bundle(files, trust, at=at or _manifest_at(files)), files
    except BundleInvalid as e:
        _refused(e)


@click.command("verify-bundle")
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@_trust_options
@click.option("--at", "at", help="Answer where the node was and whether it was attested then.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify_bundle_command(
    bundle: Path,
    ek_ca: Path,
    verifier_key: Path,
    registrar_key: Path | None,
    at: str | None,
    as_json: bool,
) -> None:
    """Verify a residency-proof bundle offline and print what it proves."""
    from geoattest.proof_verify import print_verification, verification_json

    moment = parse_time(at, "--at") if at else None
    result, _ = _verified(bundle, ek_ca, verifier_key, registrar_key, moment)
    if as_json:
        click.echo(json.dumps(verification_json(result), indent=2, sort_keys=True))
    else:
        print_verification(result, click.echo)
    sys.exit(0 if result.clean else EXIT_FINDINGS)


@click.command("report")
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=OutputPath(), required=True,
              help="report.html, report.pdf, or rounds.csv (the per-round table).")  # fmt: skip
@_trust_options
def report(
    bundle: Path, output: Path, ek_ca: Path, verifier_key: Path, registrar_key: Path | None
) -> None:
    """Verify a bundle offline, then write what it proves as HTML, PDF or CSV (exit codes as
    verify-bundle's)."""
    from geoattest.proof_report import FORMATS, write_report

    if output.suffix.lower() not in FORMATS:
        raise click.UsageError(f"-o must end in one of {', '.join(FORMATS)}")
    result, files = _verified(bundle, ek_ca, verifier_key, registrar_key, None)
    size = write_report(result, files, output)
    click.echo(f"{output}: {size:,} bytes")
    sys.exit(0 if result.clean else EXIT_FINDINGS)


def _manifest_at(files: dict[str, bytes]) -> dt.datetime | None:
    """The moment an ``export --at`` bundle was made for (the manifest is verified later)."""
    try:
        body = json.loads(files.get("manifest.json", b"{}"))
        return parse_time(str(body["at"]), "at") if "at" in body else None
    except (ValueError, click.BadParameter):
        return None


def _refused(error: BundleInvalid) -> NoReturn:
    click.echo(f"REFUSED: {error.file or 'bundle'}: {error.check or 'verification'}: ", nl=False)
    click.echo(error.message.removeprefix(f"{error.file}: "))
    sys.exit(EXIT_INVALID)
