"""``geoattest agent …`` (runs on a node) and ``geoattest agents …`` (asks the registrar)."""

from __future__ import annotations

import json

import click

from agent.enrolment import AkSpec
from agent.enrolment import enrol as run_enrolment
from agent.registrar_client import RegistrarClient
from geoattest.cli import build_settings, reports_errors
from geoattest.wire import AgentView


@click.group()
def agent() -> None:
    """The node side: TPM identity and enrolment."""


@agent.command("enrol")
@click.option("--registrar", "registrar_url", help="Registrar base URL, e.g. http://10.0.0.5:8890.")
@click.option("--tcti", help="TPM to use: swtpm:host=H,port=P or device:/dev/tpmrm0.")
@click.option("--agent-id", "agent_id", help="Agent id (default: derived from the EK certificate).")
@click.option("--json", "as_json", is_flag=True, help="Print the registrar's record as JSON.")
@click.pass_context
@reports_errors
def enrol(ctx: click.Context, /, as_json: bool, **flags: object) -> None:
    """Enrol this node: prove the AK lives in the allowlisted TPM. Exit 0 when active."""
    from agent.tpm_device import TpmDevice  # needs libtss2 only here

    settings = build_settings(ctx, **flags)
    client = RegistrarClient(settings.registrar_url, timeout=settings.http_timeout_seconds)
    ak = AkSpec(handle=settings.ak_handle, algorithm=settings.ak_algorithm)
    with TpmDevice(settings.tcti, ek_algorithm=settings.ek_algorithm) as device:
        view = run_enrolment(device, client, settings.agent_id, ak)
    client.close()
    print_agent(view, as_json)


@click.group()
def agents() -> None:
    """Fleet identities as the registrar knows them."""


@agents.command("list")
@click.option("--registrar", "registrar_url", help="Registrar base URL.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
@reports_errors
def list_agents(ctx: click.Context, /, as_json: bool, **flags: object) -> None:
    """List enrolled agents."""
    settings = build_settings(ctx, **flags)
    client = RegistrarClient(settings.registrar_url, timeout=settings.http_timeout_seconds)
    listing = client.list_agents()
    client.close()
    if as_json:
        click.echo(json.dumps(listing.model_dump(mode="json")["agents"], indent=2))
        return
    click.echo(f"{'AGENT':<24} {'STATE':<8} {'EK SHA-256':<18} {'TPM':<14} ANCHOR")
    for view in listing.agents:
        tpm_text = " ".join(filter(None, [view.tpm_manufacturer, view.tpm_model])) or "-"
        click.echo(
            f"{view.agent_id:<24} {view.state:<8} {view.ek_fingerprint[:16]:<18} "
            f"{tpm_text:<14} {view.ek_anchor_subject}"
        )


@agents.command("show")
@click.argument("agent_id")
@click.option("--registrar", "registrar_url", help="Registrar base URL.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@reports_errors
def show_agent(ctx: click.Context, /, agent_id: str, as_json: bool, **flags: object) -> None:
    """Show one agent's identity record."""
    settings = build_settings(ctx, **flags)
    client = RegistrarClient(settings.registrar_url, timeout=settings.http_timeout_seconds)
    view = client.get_agent(agent_id)
    client.close()
    print_agent(view, as_json)


@agents.command("delete")
@click.argument("agent_id")
@click.option("--registrar", "registrar_url", help="Registrar base URL.")
@click.option("--admin-token", envvar="GEOATTEST_ADMIN_TOKEN", help="Registrar admin token.")
@click.pass_context
@reports_errors
def delete_agent(
    ctx: click.Context, /, agent_id: str, admin_token: str | None, **flags: object
) -> None:
    """Remove an agent's identity (it must enrol again to rejoin)."""
    settings = build_settings(ctx, **flags)
    client = RegistrarClient(settings.registrar_url, timeout=settings.http_timeout_seconds)
    client.delete_agent(agent_id, admin_token=admin_token)
    client.close()
    click.echo(f"deleted {agent_id}")


def print_agent(view: AgentView, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(view.model_dump(mode="json"), indent=2))
        return
    rows = [
        ("agent id", view.agent_id),
        ("state", view.state),
        ("EK certificate SHA-256", view.ek_fingerprint),
        ("EK trust anchor", view.ek_anchor_subject),
        ("TPM", " ".join(filter(None, [view.tpm_manufacturer, view.tpm_model])) or "-"),
        ("AK name", view.ak_name or "-"),
        ("purchase order", view.purchase_order or "-"),
        ("asset tag", view.asset_tag or "-"),
        ("enrolled at", view.enrolled_at.isoformat()),
        ("activated at", view.activated_at.isoformat() if view.activated_at else "-"),
    ]
    for label, value in rows:
        click.echo(f"{label + ':':<24} {value}")
