"""``geoattest dev …``: a local fleet for quickstart, demos and manual testing."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import FrameType

import click

from geoattest.cli import build_settings, reports_errors
from geoattest.cli_agent import print_agent


@click.group()
def dev() -> None:
    """Developer tooling: a local fleet on swtpm."""


@dev.command("fleet")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("var/quickstart"),
    show_default=True,
    help="Where the CA, TPM states, database and logs live (reused across runs).",
)
@click.option(
    "--agents",
    "agent_count",
    type=click.IntRange(1, 50),
    default=1,
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
@click.option("--once", is_flag=True, help="Stop after enrolling and printing, instead of serving.")
@click.pass_context
@reports_errors
def fleet(
    ctx: click.Context, /, state_dir: Path, agent_count: int, registrar_port: int, once: bool
) -> None:
    """Start a CA, a registrar and agents on swtpm; enrol the agents; print their identities."""
    from geoattest.devfleet import enrol_all, local_fleet, pick_port

    build_settings(ctx)
    agent_ids = [f"edge-{n:02d}" for n in range(1, agent_count + 1)]
    with local_fleet(state_dir, agent_ids, registrar_port=pick_port(registrar_port)) as running:
        click.echo(f"\nenrolling {len(agent_ids)} agent(s) with {running.registrar_url}")
        for view in enrol_all(running):
            click.echo("")
            print_agent(view, as_json=False)
        click.echo(f"\nregistrar: {running.registrar_url}/v1/agents   logs: {state_dir}/logs")
        if once:
            return
        click.echo("fleet running; Ctrl-C stops it")
        _wait_for_interrupt()
    click.echo("fleet stopped")


def _wait_for_interrupt() -> None:
    stop = False

    def _request_stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _request_stop)
    try:
        while not stop:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
