"""``geoattest token …``: get a token from the local agent, verify one as a relying party."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import click

from geoattest.cli import EXIT_REFUSED, build_settings, reports_errors
from geoattest.jose import b64url_decode
from geoattest.token_sources import load_jwks, load_status
from geoattest.wire_tokens import WorkloadTokenRequest
from geoattest.workload_client import request_token
from verifier.tokens.verify import Expected, Rejected, VerifiedToken, verify_token
from verifier.tokens.vocabulary import EarStatus, TokenType

_SOCKET = click.Path(dir_okay=False, path_type=Path)


@click.group()
def token() -> None:
    """PoR/PoG tokens: fetch one for this process, or check one."""


@token.command("get")
@click.option("--type", "token_type", type=click.Choice(["por", "pog"]), default="por")
@click.option("--audience", required=True, help="Who the token is for (its aud).")
@click.option("--socket", "workload_socket", type=_SOCKET, help="The agent's workload socket.")
@click.option("--nonce", help="A relying party's nonce (base64url, 8-48 bytes): a fresh round.")
@click.option("--json", "as_json", is_flag=True, help="Print the agent's whole answer.")
@click.pass_context
@reports_errors
def get(
    ctx: click.Context, /, token_type: str, audience: str, nonce: str | None, as_json: bool,
    **flags: object,
) -> None:  # fmt: skip
    """Print a token naming this process's executable (from the local agent)."""
    settings = build_settings(ctx, **flags)
    if settings.workload_socket is None:
        raise click.UsageError("no workload socket: give --socket or GEOATTEST_WORKLOAD_SOCKET")
    view = request_token(
        settings.workload_socket,
        WorkloadTokenRequest(type=token_type, audience=audience, nonce=nonce),  # type: ignore[arg-type]  # a Choice
    )
    click.echo(view.model_dump_json() if as_json else view.token)


@token.command("verify")
@click.argument("given", metavar="TOKEN")
@click.option("--jwks", required=True, help="The verifier's JWKS: a file or a URL.")
@click.option("--audience", required=True, help="Your audience: the token's aud must be it.")
@click.option("--require", type=click.Choice(["por", "pog"]), default="por")
@click.option("--zone", "zones", multiple=True, help="Accept only these zones (repeatable).")
@click.option("--max-age", type=float, help="Refuse tokens issued longer ago (seconds).")
@click.option("--status", help="The verifier's revocation status: a file or a URL.")
@click.option("--issuer", help="The verifier's token issuer (iss).")
@click.option("--nonce", help="The nonce you sent (base64url).")
@click.option(
    "--min-tier",
    type=click.Choice([s.value for s in EarStatus if s is not EarStatus.NONE]),
    default="affirming",
    show_default=True,
)
@reports_errors
def verify(
    given: str,
    jwks: str,
    audience: str,
    require: str,
    zones: tuple[str, ...],
    max_age: float | None,
    status: str | None,
    issuer: str | None,
    nonce: str | None,
    min_tier: str,
) -> None:
    """Check TOKEN ("-": read it from stdin). Prints what it proves; exit 2 with the reason
    (expired, not_yet_valid, wrong_audience, bad_signature, unknown_kid, wrong_typ, revoked,
    not_pog, wrong_zone, weak_tier, …) when it does not hold."""
    text = sys.stdin.read() if given == "-" else given
    now = dt.datetime.now(dt.UTC)
    keys = load_jwks(jwks)
    revoked = load_status(status, keys, now).revoked if status else frozenset()
    expected = Expected(
        audience=audience,
        issuer=issuer,
        require=TokenType(require),
        zones=frozenset(zones),
        max_age=dt.timedelta(seconds=max_age) if max_age is not None else None,
        min_tier=EarStatus(min_tier),
        nonce=b64url_decode(nonce, "nonce") if nonce else None,
        revoked=revoked,
    )
    verdict = verify_token(text.strip(), keys, expected, now)
    if isinstance(verdict, Rejected):
        click.echo(f"error: token_{verdict.reason.value}: {verdict.message}", err=True)
        sys.exit(EXIT_REFUSED)
    click.echo(json.dumps(summary(verdict), indent=2))


def summary(verdict: VerifiedToken) -> dict[str, object]:
    geo = verdict.geo
    return {
        "valid": True,
        "type": verdict.type.value,
        "status": verdict.status.value,
        "submods": {name: tier.value for name, tier in verdict.submods.items()},
        "subject": verdict.subject,
        "audience": verdict.audience,
        "issuer": verdict.issuer,
        "issued_at": verdict.issued_at.isoformat(),
        "expires_at": verdict.expires_at.isoformat(),
        "jti": verdict.jti,
        "agent_id": verdict.agent_id,
        "record_seq": verdict.record_seq,
        "record_digest": verdict.record_digest,
        "policy": verdict.policy,
        "workload_sha256": verdict.workload_sha256.hex(),
        "workload_measured_by": verdict.workload_measured_by.value,
        "zone": geo.zone_id if geo else None,
        "cnf_jkt": verdict.cnf_jkt,
    }


__all__ = ["summary", "token"]
