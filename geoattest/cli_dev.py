"""``geoattest dev …``: a local fleet for quickstart, demos and manual testing."""

from __future__ import annotations

import signal
import time
from datetime import datetime
from pathlib import Path
from types import FrameType

import click
import requests

from geoattest.cli import build_settings, reports_errors
from geoattest.cli_agent import print_agent
from geoattest.dev.fleet_status import (
    AgentLine,
    Get,
    StatusWatch,
    fetch_lines,
    format_table,
    wait_until_verified,
)

VERIFY_TIMEOUT_SECONDS = 60.0
WATCH_SECONDS = 1.0

STATE_DIR_OPTION = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("var/quickstart"),
    show_default=True,
    help="Where the CA, TPM states, databases and logs live (reused across runs).",
)


@click.group()
def dev() -> None:
    """Developer tooling: a local fleet on swtpm."""


@dev.command("fleet")
@STATE_DIR_OPTION
@click.option(
    "--agents",
    "agent_count",
    type=click.IntRange(1, 50),
    default=2,
    show_default=True,
    help="How many agents, each on its own swtpm.",
)
@click.option(
    "--registrar-port",
    type=int,
    default=8890,
    show_default=True,
    help="Registrar port (another free port is used if this one is taken).",
)
@click.option(
    "--verifier-port",
    type=int,
    default=8891,
    show_default=True,
    help="Verifier API port (another free port is used if this one is taken).",
)
@click.option(
    "--once", is_flag=True, help="Stop after the agents are attested, instead of serving."
)
@click.pass_context
@reports_errors
def fleet(
    ctx: click.Context,
    /,
    state_dir: Path,
    agent_count: int,
    registrar_port: int,
    verifier_port: int,
    once: bool,
) -> None:
    """Run a local fleet: registrar, verifier, agents on swtpm; enrol and attest them.

    The table shows only what this run verified (an agent is ``waiting`` until a round of this
    run ends); while the fleet serves, every change of an agent's state is printed.
    """
    from geoattest.dev.fleet import admit_all, enrol_all, local_fleet
    from geoattest.dev.procs import free_port, port_accepts

    build_settings(ctx)
    agent_ids = [f"edge-{n:02d}" for n in range(1, agent_count + 1)]
    ports = {
        name: free_port() if port_accepts(port) else port
        for name, port in (("registrar", registrar_port), ("verifier", verifier_port))
    }
    with local_fleet(
        state_dir, agent_ids, registrar_port=ports["registrar"], verifier_port=ports["verifier"]
    ) as running:
        click.echo(f"\nenrolling {len(agent_ids)} agent(s) with {running.registrar_url}")
        for view in enrol_all(running):
            click.echo("")
            print_agent(view, as_json=False)
        click.echo(f"\nputting the agents under continuous attestation at {running.verifier_url}")
        admit_all(running)
        lines = wait_until_verified(
            running.verifier_get, agent_ids, running.started_at, timeout=VERIFY_TIMEOUT_SECONDS
        )
        click.echo("\n" + format_table(lines))
        if not all(line.verified for line in lines):
            raise click.ClickException(f"not every agent is attested; see {state_dir}/logs")
        click.echo(f"\nregistrar {running.registrar_url}/v1/agents · verifier "
                   f"{running.verifier_url}/v1/agents · logs {state_dir}/logs")  # fmt: skip
        if once:
            return
        keys = state_dir / "api-keys"
        click.echo(
            "fleet running; Ctrl-C stops it. State changes are printed here. Operator API keys "
            f"(admin) are in {keys}/operator.key. Try, in another terminal:\n"
            f"  geoattest dev measure --state-dir {state_dir} edge-01 /usr/bin/python3\n"
            f'  curl -s -H "Authorization: Bearer $(cat {keys}/operator.key)" '
            f"{running.verifier_url}/v1/agents/edge-01   # failed within seconds"
        )
        _watch_until_interrupt(running.verifier_get, agent_ids, running.started_at, lines)
    click.echo("fleet stopped")


@dev.command("measure")
@STATE_DIR_OPTION
@click.argument("agent_id")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@reports_errors
def measure(state_dir: Path, agent_id: str, path: Path) -> None:
    """Record PATH as executed on a running fleet's agent (IMA log + PCR 10), as IMA would."""
    from geoattest.dev.fleet import measure_on

    click.echo(measure_on(state_dir, agent_id, path))


def _watch_until_interrupt(
    get: Get, agent_ids: list[str], since: datetime, lines: list[AgentLine]
) -> None:
    """Print every state change until Ctrl-C or SIGTERM."""
    stop = False

    def _request_stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _request_stop)
    watch = StatusWatch(lines)
    try:
        while not stop:
            time.sleep(WATCH_SECONDS)
            try:
                changes = watch.changes(fetch_lines(get, agent_ids, since))
            except requests.RequestException as e:
                changes = watch.verifier_down(e)
            for change in changes:
                click.echo(f"{datetime.now().astimezone():%X} {change}")
    except KeyboardInterrupt:
        pass
