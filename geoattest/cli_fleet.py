"""``geoattest verifier agents|policies|events``: the verified fleet from the command line.

A thin layer over the verifier's ``/v1`` API (``--verifier``, default ``verifier_url``) with the
API key of the settings (``api_key``); tables by default, ``--json`` for the API's own JSON.
Exit codes are the shell's (``geoattest.cli``): 0 done, 2 refused (the error code is printed),
3 the verifier could not be reached, 1 bad configuration or usage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from geoattest.cli import build_settings, reports_errors
from geoattest.verifier_api import VerifierApi, agent_path

_VERIFIER = click.option("--verifier", "verifier_url", help="The verifier's API base URL.")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
_COLUMNS = ("agent_id", "state", "lease_remaining_seconds", "last_round_at", "reason")


def _api(ctx: click.Context, verifier_url: str | None) -> VerifierApi:
    settings = build_settings(ctx, **({"verifier_url": verifier_url} if verifier_url else {}))
    key = settings.api_key.get_secret_value() if settings.api_key is not None else None
    return VerifierApi(settings.verifier_url, key)


def _table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _show(answer: object, as_json: bool) -> None:
    if as_json or not isinstance(answer, dict):
        click.echo(json.dumps(answer, indent=2))
        return
    for name, value in answer.items():
        click.echo(f"{name}: {json.dumps(value) if isinstance(value, dict | list) else value}")


@click.group("agents")
def agents() -> None:
    """Agents under verification: states through the lease, and operator actions."""


@agents.command("list")
@_VERIFIER
@_JSON
@click.pass_context
@reports_errors
def agents_list(ctx: click.Context, /, verifier_url: str | None, as_json: bool) -> None:
    """Every agent with its state, lease left, last round and failure reason."""
    answer = _api(ctx, verifier_url).call("GET", "/v1/fleet")
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    _table(answer["agents"], _COLUMNS)
    counts = ", ".join(f"{n} {state}" for state, n in answer["counts"].items() if n)
    click.echo(f"{len(answer['agents'])} agents: {counts or 'none'}")


@agents.command("show")
@click.argument("agent_id")
@_VERIFIER
@_JSON
@click.pass_context
@reports_errors
def agents_show(
    ctx: click.Context, /, agent_id: str, verifier_url: str | None, as_json: bool
) -> None:
    """One agent's status (the exact failure reason and its details)."""
    _show(_api(ctx, verifier_url).call("GET", agent_path(agent_id)), as_json)


@agents.command("add")
@click.argument("agent_id")
@click.option("--policy", required=True, help="The policy to verify it under.")
@_VERIFIER
@_JSON
@click.pass_context
@reports_errors
def agents_add(
    ctx: click.Context, /, agent_id: str, policy: str, verifier_url: str | None, as_json: bool
) -> None:
    """Take an enrolled, active agent under verification (admin)."""
    body = {"policy": policy}
    _show(_api(ctx, verifier_url).call("POST", agent_path(agent_id), body), as_json)


@agents.command("remove")
@click.argument("agent_id")
@_VERIFIER
@click.pass_context
@reports_errors
def agents_remove(ctx: click.Context, /, agent_id: str, verifier_url: str | None) -> None:
    """Stop verifying an agent; its unexpired tokens are revoked (admin)."""
    _api(ctx, verifier_url).call("DELETE", agent_path(agent_id))
    click.echo(f"removed {agent_id}")


def _action(name: str, help_text: str) -> None:
    @agents.command(name, help=help_text)
    @click.argument("agent_id")
    @_VERIFIER
    @_JSON
    @click.pass_context
    @reports_errors
    def act(ctx: click.Context, /, agent_id: str, verifier_url: str | None, as_json: bool) -> None:
        answer = _api(ctx, verifier_url).call("POST", agent_path(agent_id, f"/{name}"), {})
        _show(answer, as_json)


for _name, _help in (
    ("pause", "Stop rounds of an agent (admin)."),
    ("resume", "Resume a paused agent (admin)."),
    ("readmit", "Start a failed agent over, after looking at it (admin)."),
    ("refresh", "Take the agent's identity again from the registrar (admin)."),
):
    _action(_name, _help)


@click.group("policies")
def policies() -> None:
    """Attestation policies stored at the verifier."""


@policies.command("list")
@_VERIFIER
@_JSON
@click.pass_context
@reports_errors
def policies_list(ctx: click.Context, /, verifier_url: str | None, as_json: bool) -> None:
    """Stored policies: name, version, size and digest (``policies show`` prints one)."""
    answer = _api(ctx, verifier_url).call("GET", "/v1/policies")
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    _table(answer["policies"], ("name", "version", "updated_at", "size_bytes", "sha256"))


@policies.command("show")
@click.argument("name")
@_VERIFIER
@click.pass_context
@reports_errors
def policies_show(ctx: click.Context, /, name: str, verifier_url: str | None) -> None:
    """The stored policy as JSON."""
    click.echo(json.dumps(_api(ctx, verifier_url).call("GET", f"/v1/policies/{name}"), indent=2))


@policies.command("push")
@click.argument("name")
@click.argument("document", type=click.Path(dir_okay=False, path_type=Path))
@_VERIFIER
@click.pass_context
@reports_errors
def policies_push(
    ctx: click.Context, /, name: str, document: Path, verifier_url: str | None
) -> None:
    """Store a policy document (JSON file) under NAME; takes effect next round (admin)."""
    try:
        body = json.loads(document.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise click.UsageError(f"{document}: {e}") from e
    answer = _api(ctx, verifier_url).call("PUT", f"/v1/policies/{name}", body)
    click.echo(f"policy {answer['name']} version {answer['version']} sha256 {answer['sha256']}")


@policies.command("delete")
@click.argument("name")
@_VERIFIER
@click.pass_context
@reports_errors
def policies_delete(ctx: click.Context, /, name: str, verifier_url: str | None) -> None:
    _api(ctx, verifier_url).call("DELETE", f"/v1/policies/{name}")
    click.echo(f"deleted policy {name}")


@click.command("events")
@click.option("--agent", "agent_id", help="Only this agent's events.")
@click.option("--follow", is_flag=True, help="Go on printing events as they happen.")
@_VERIFIER
@_JSON
@click.pass_context
@reports_errors
def events(
    ctx: click.Context, /, agent_id: str | None, follow: bool, verifier_url: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    """State transitions (newest 100), and with --follow the live ones (Ctrl-C stops)."""
    api = _api(ctx, verifier_url)
    query = f"?agent={agent_id}" if agent_id else ""
    for event in api.call("GET", f"/v1/events{query}")["events"]:
        _print_event(event, as_json)
    if follow:
        try:
            for event in api.stream(f"/v1/events/stream{query}"):
                _print_event(event, as_json)
        except KeyboardInterrupt:
            return


def _print_event(event: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(event, separators=(",", ":")))
        return
    reason = f" {event['reason']}" if event.get("reason") else ""
    message = f": {event['message']}" if event.get("message") else ""
    click.echo(
        f"{event['at']}  {event['agent_id']}  {event['from_state']} -> {event['to_state']}"
        f"{reason}{message}",
        color=False,
    )
