"""``geoattest agent …`` (runs on a node) and ``geoattest agents …`` (asks the registrar)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import click

from agent.enrolment import AkSpec, ApiEndpoint, default_agent_id
from agent.enrolment import enrol as run_enrolment
from agent.gnss.identify import identify_configured
from agent.registrar_client import RegistrarClient
from geoattest.cli import build_settings, listening, reports_errors
from geoattest.cli_types import PORT
from geoattest.settings import Settings
from geoattest.wire import AgentView

_DIR = click.Path(file_okay=False, path_type=Path)
_FILE = click.Path(dir_okay=False, path_type=Path)
_GNSS_HELP = "GNSS receiver: file:PATH[?paced], serial:URL[?baud=N] or gpsd:HOST:PORT."


@click.group()
def agent() -> None:
    """The node side: TPM identity, enrolment and the evidence API."""


@agent.command("enrol")
@click.option("--registrar", "registrar_url", help="Registrar base URL, e.g. http://10.0.0.5:8890.")
@click.option("--tcti", help="TPM to use: swtpm:host=H,port=P or device:/dev/tpmrm0.")
@click.option("--agent-id", "agent_id", help="Agent id (default: derived from the EK certificate).")
@click.option("--host", "agent_host", help="Host the verifier reaches the agent API at.")
@click.option("--port", "agent_port", type=PORT, help="Port of the agent API.")
@click.option("--agent-url", "agent_url", help="Full API URL to register (default from host/port).")
@click.option("--state-dir", "agent_state_dir", type=_DIR, help="Where the agent TLS key lives.")
@click.option("--gnss", "gnss_source", help=_GNSS_HELP + " Also registers the location key.")
@click.option("--json", "as_json", is_flag=True, help="Print the registrar's record as JSON.")
@click.pass_context
@reports_errors
def enrol(ctx: click.Context, /, as_json: bool, **flags: object) -> None:
    """Enrol this node: prove the AK lives in the allowlisted TPM. Exit 0 when active.

    Also registers the evidence API's URL and TLS certificate (created in the state directory
    if needed), which the verifier pins. With a GNSS source (--gnss), also the TPM-resident
    location key (created if absent, certified by the AK) that signs location evidence, and
    the GNSS receiver read from it until its first fix (model/firmware banners, source kind and
    device; "unidentified" when it sends no banner).
    """
    from agent.server import agent_url  # needs libtss2 only here
    from agent.tls import ensure_server_identity
    from agent.tpm_device import TpmDevice

    settings = build_settings(ctx, **flags)

    def endpoint(agent_id: str) -> ApiEndpoint:
        identity = ensure_server_identity(
            settings.agent_state_dir, agent_id, settings.agent_host, renew=True
        )
        return ApiEndpoint(url=agent_url(settings), tls_certificate=identity.certificate_der)

    client = registrar_client(settings)
    ak = AkSpec(handle=settings.ak_handle, algorithm=settings.ak_algorithm)
    location_key_handle, receiver = None, None
    if settings.gnss_source is not None:
        # A typo in the spec fails here (ConfigurationError), not at ``agent serve``.
        receiver = identify_configured(settings.gnss_source)
        location_key_handle = settings.location_key_handle
    try:
        with TpmDevice(settings.tcti, ek_algorithm=settings.ek_algorithm) as device:
            view = run_enrolment(
                device,
                client,
                settings.agent_id,
                ak,
                endpoint=endpoint,
                location_key_handle=location_key_handle,
                gnss_receiver=receiver,
            )
    finally:
        client.close()
    print_agent(view, as_json)


@agent.command("serve")
@click.option("--tcti", help="TPM to use: swtpm:host=H,port=P or device:/dev/tpmrm0.")
@click.option("--agent-id", "agent_id", help="Agent id (default: derived from the EK certificate).")
@click.option("--host", "agent_host", help="Address to listen on (and the certificate's SAN).")
@click.option("--port", "agent_port", type=PORT, help="Port to listen on.")
@click.option("--ima-log", "ima_log_path", type=_FILE, help="IMA ascii measurement list.")
@click.option("--boot-log", "boot_log_path", type=_FILE, help="TCG boot event log (binary).")
@click.option(
    "--verifier-ca", "verifier_client_ca", type=_FILE, help="CA (PEM) of verifier client certs."
)
@click.option("--state-dir", "agent_state_dir", type=_DIR, help="Where the agent TLS key lives.")
@click.option("--gnss", "gnss_source", help=_GNSS_HELP + " Default: no location evidence.")
@click.option("--verifier", "verifier_url", help="The verifier's API (tokens for workloads).")
@click.option(
    "--workload-socket", "workload_socket", type=_FILE, help="Unix socket of the workload API."
)
@click.pass_context
@reports_errors
def serve(ctx: click.Context, /, **flags: object) -> None:
    """Serve the evidence API to the verifier over mTLS until interrupted.

    With a GNSS source (--gnss), rounds that ask for location get the latest fix signed by the
    location key registered with ``agent enrol --gnss``. Local workloads get PoR/PoG tokens on
    the workload socket (``geoattest token get``), from the verifier at --verifier.
    """
    from agent.server import serve as run_server  # needs libtss2 only here
    from agent.tpm_device import TpmDevice

    settings = build_settings(ctx, **flags)
    agent_id = settings.agent_id or _agent_id_from_tpm(settings)

    def open_device() -> TpmDevice:
        return TpmDevice(settings.tcti, ek_algorithm=settings.ek_algorithm)

    with listening("the agent", settings.agent_host, settings.agent_port):
        run_server(settings, open_device, agent_id)


@agent.command("push")
@click.option("--tcti", help="TPM to use: swtpm:host=H,port=P or device:/dev/tpmrm0.")
@click.option("--agent-id", "agent_id", help="Agent id (default: derived from the EK certificate).")
@click.option("--host", "agent_host", help="The host its registered certificate names.")
@click.option("--ima-log", "ima_log_path", type=_FILE, help="IMA ascii measurement list.")
@click.option("--boot-log", "boot_log_path", type=_FILE, help="TCG boot event log (binary).")
@click.option(
    "--verifier-ca", "verifier_client_ca", type=_FILE, help="CA (PEM) of the verifier's TLS."
)
@click.option("--state-dir", "agent_state_dir", type=_DIR, help="Where the agent TLS key lives.")
@click.option("--push-url", "verifier_push_url", help="The verifier's push listener.")
@click.option("--gnss", "gnss_source", help=_GNSS_HELP + " Default: no location evidence.")
@click.option("--verifier", "verifier_url", help="The verifier's API (tokens for workloads).")
@click.option(
    "--workload-socket", "workload_socket", type=_FILE, help="Unix socket of the workload API."
)
@click.pass_context
@reports_errors
def push(ctx: click.Context, /, **flags: object) -> None:
    """Push evidence to the verifier's push listener until interrupted (ADR 19): for nodes
    nobody can reach. Uses the certificate registered by ``agent enrol``; --gnss and
    --workload-socket work as for ``agent serve``."""
    from agent.server import push_forever  # needs libtss2 only here
    from agent.tpm_device import TpmDevice

    settings = build_settings(ctx, **flags)
    agent_id = settings.agent_id or _agent_id_from_tpm(settings)

    def open_device() -> TpmDevice:
        return TpmDevice(settings.tcti, ek_algorithm=settings.ek_algorithm)

    with contextlib.suppress(KeyboardInterrupt):
        push_forever(settings, open_device, agent_id)


def _agent_id_from_tpm(settings: Settings) -> str:
    from agent.tpm_device import TpmDevice

    with TpmDevice(settings.tcti, ek_algorithm=settings.ek_algorithm) as device:
        return default_agent_id(device.read_ek_certificate())


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
    client = registrar_client(settings)
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
    client = registrar_client(settings)
    view = client.get_agent(agent_id)
    client.close()
    print_agent(view, as_json)


@agents.command("delete")
@click.argument("agent_id")
@click.option("--registrar", "registrar_url", help="Registrar base URL.")
@click.pass_context
@reports_errors
def delete_agent(ctx: click.Context, /, agent_id: str, **flags: object) -> None:
    """Remove an agent's identity (it must enrol again to rejoin); needs an admin API key."""
    settings = build_settings(ctx, **flags)
    client = registrar_client(settings)
    client.delete_agent(agent_id)
    client.close()
    click.echo(f"deleted {agent_id}")


def registrar_client(settings: Settings) -> RegistrarClient:
    """A client presenting ``GEOATTEST_API_KEY`` (reading agents needs role viewer)."""
    key = settings.api_key
    return RegistrarClient(
        settings.registrar_url,
        timeout=settings.http_timeout_seconds,
        api_key=key.get_secret_value() if key else None,
    )


def print_agent(view: AgentView, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(view.model_dump(mode="json"), indent=2))
        return
    rows = [
        ("agent id", view.agent_id),
        ("state", view.state),
        ("EK key SHA-256 (SPKI)", view.ek_fingerprint),
        ("EK trust anchor", view.ek_anchor_subject),
        ("TPM", " ".join(filter(None, [view.tpm_manufacturer, view.tpm_model])) or "-"),
        ("AK name", view.ak_name or "-"),
        ("location key", "registered" if view.location_key_public else "-"),
        ("GNSS receiver", _receiver_line(view)),
        ("purchase order", view.purchase_order or "-"),
        ("asset tag", view.asset_tag or "-"),
        ("enrolled at", view.enrolled_at.isoformat()),
        ("activated at", view.activated_at.isoformat() if view.activated_at else "-"),
    ]
    for label, value in rows:
        click.echo(f"{label + ':':<24} {value}")


def _receiver_line(view: AgentView) -> str:
    receiver = view.gnss_receiver
    if receiver is None:
        return "-"
    what = " | ".join(receiver.texts) if receiver.texts else "unidentified"
    return f"{receiver.source}" + (f" {receiver.device}" if receiver.device else "") + f": {what}"
