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
    default=5,
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
    "--push-agents",
    "push_count",
    type=click.IntRange(0, 49),
    default=1,
    show_default=True,
    help="How many agents push their evidence (ADR 19: nobody connects to them) instead of "
    "serving it: the last ones on an inside site, never the first.",
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
    push_count: int,
    once: bool,
) -> None:
    """Run a local fleet: registrar, verifier, agents on swtpm; enrol and attest them.

    The table shows only what this run verified (an agent is ``waiting`` until a round of this
    run ends); while the fleet serves, every change of an agent's state is printed.
    """
    from geoattest.dev.fleet import admit_all, enrol_all, local_fleet, push_agents_of
    from geoattest.dev.procs import free_port, port_accepts

    build_settings(ctx)
    agent_ids = [f"edge-{n:02d}" for n in range(1, agent_count + 1)]
    ports = {
        name: free_port() if port_accepts(port) else port
        for name, port in (("registrar", registrar_port), ("verifier", verifier_port))
    }
    pushing = push_agents_of(agent_ids, push_count)
    with local_fleet(
        state_dir,
        agent_ids,
        registrar_port=ports["registrar"],
        verifier_port=ports["verifier"],
        push_agents=pushing,
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
        on_border = {agent_id for agent_id, node in running.agents.items() if node.site == "border"}
        _check_settled(lines, on_border, state_dir)
        click.echo(f"\nregistrar {running.registrar_url}/v1/agents · verifier "
                   f"{running.verifier_url}/v1/agents · logs {state_dir}/logs")  # fmt: skip
        for agent_id in sorted(pushing):
            click.echo(
                f"{agent_id} pushes: it asks {running.push_url} for a challenge and posts its "
                "evidence over mTLS; nobody connects to it (ADR 19)"
            )
        for agent_id in sorted(on_border):
            click.echo(
                f"{agent_id} walks the border of the demo zone berlin: its accuracy disc crosses "
                "it, so the zone decision is 'uncertain', which is never 'inside' "
                f"({BORDER_REASON}), as designed"
            )
        if once:
            return
        key = running.verifier_api_key
        first = agent_ids[0]
        socket = running.agents[first].workload_socket
        click.echo(
            f"\ndashboard  {running.verifier_url}/dashboard/\n"
            f"  log in with this run's operator API key (admin): {key}\n"
            f"  (also in {state_dir / 'api-keys' / 'operator.key'})\n"
            f"a token:   geoattest token get --type pog --audience demo --socket {socket}\n"
            f"metrics:   curl -s -H 'Authorization: Bearer {key}' {running.verifier_url}/metrics"
            f"  (rounds: {running.worker_metrics_url})\n"
            "tamper:    geoattest fleet tamper AGENT --ima | --pcr | --teleport | --gnss-off "
            f"--state-dir {state_dir}\n"
            "fleet running; Ctrl-C stops it. State changes are printed here."
        )
        _watch_until_interrupt(running.verifier_get, agent_ids, running.started_at, lines)
    click.echo("fleet stopped")


BORDER_REASON = "location_outside_zone"


def _check_settled(lines: list[AgentLine], on_border: set[str], state_dir: Path) -> None:
    """Every agent attested, except those on a zone border: failed as ``uncertain``."""
    wrong = [
        line.agent_id
        for line in lines
        if (line.agent_id in on_border and (line.state, line.reason) != ("failed", BORDER_REASON))
        or (line.agent_id not in on_border and not line.verified)
    ]
    if wrong:
        raise click.ClickException(
            f"not as expected: {', '.join(wrong)} (every agent attested but the one on the "
            f"border, failed with {BORDER_REASON}); see {state_dir}/logs"
        )


@click.group("fleet")
def fleet_group() -> None:
    """A running local fleet (``geoattest dev fleet``): tamper with its agents."""


@fleet_group.command("tamper")
@STATE_DIR_OPTION
@click.argument("agent_id")
@click.option("--ima", "how", flag_value="ima", help="Run an executable the policy does not know.")
@click.option("--pcr", "how", flag_value="pcr", help="Extend PCR 7, as a changed boot would.")
@click.option("--teleport", "how", flag_value="teleport", help="Move the node 880 km (GNSS).")
@click.option("--gnss-off", "how", flag_value="gnss_off", help="Silence the GNSS receiver.")
@reports_errors
def tamper_command(state_dir: Path, agent_id: str, how: str | None) -> None:
    """Tamper with AGENT of the running fleet; the verifier fails it within a round or two.

    Prints what was done and the reason the verifier will give. The next run of the fleet
    starts the agent clean again; ``geoattest verifier agents readmit AGENT`` re-admits it."""
    from geoattest.dev.fleet_tamper import EXPECTED_REASON, Tamper, tamper

    if how is None:
        raise click.UsageError("say how: --ima, --pcr, --teleport or --gnss-off")
    chosen = Tamper(how)
    click.echo(tamper(state_dir, agent_id, chosen))
    click.echo(f"expect {agent_id} failed with {EXPECTED_REASON[chosen]} within seconds")


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
