"""The commands as an operator runs them: ``geoattest registrar serve`` (waitress) in its own
process, ``geoattest agent enrol`` and ``geoattest agents list`` against it over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from geoattest.dev.procs import http_ok
from geoattest.dev.swtpm import SwtpmCa, SwtpmInstance, free_port_pair
from tests.support.registrar_server import trust_dir_with
from tests.support.service_process import ServiceProcess

pytestmark = [pytest.mark.swtpm, pytest.mark.slow]

GEOATTEST = [sys.executable, "-m", "geoattest"]


def _run(*args: str, cwd: Path, **env_values: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in ``cwd``, so that its default state (``var/``) lands there, not here."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GEOATTEST_")}
    env.update(env_values)
    return subprocess.run(
        [*GEOATTEST, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
        cwd=cwd,
    )


@pytest.fixture
def registrar_url(tmp_path: Path, test_ca: SwtpmCa) -> Iterator[str]:
    port = free_port_pair()
    trust_dir = trust_dir_with(tmp_path / "ek-ca", test_ca.trust_store)
    url = f"http://127.0.0.1:{port}"
    healthy = http_ok(url + "/v1/healthz")
    server = ServiceProcess(
        "registrar",
        [
            "registrar", "serve", "--ek-ca", str(trust_dir), "--port", str(port),
            "--db", f"sqlite:///{tmp_path / 'registrar.sqlite'}",
            "--state-dir", str(tmp_path / "registrar-state"),
        ],
        env=os.environ, log_path=tmp_path / "registrar.log", cwd=tmp_path,
        ready=lambda _log: healthy(),
    )  # fmt: skip
    server.start()
    try:
        yield url
    finally:
        server.stop()


def test_enrol_command_succeeds_and_lists_the_agent(
    registrar_url: str, swtpm: SwtpmInstance, tmp_path: Path
) -> None:
    enrolled = _run(
        "agent", "enrol", "--registrar", registrar_url, "--tcti", swtpm.tcti,
        "--agent-id", "edge-cli", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert enrolled.returncode == 0, enrolled.stderr
    record = json.loads(enrolled.stdout)
    assert record["agent_id"] == "edge-cli"
    assert record["state"] == "active"
    anonymous = _run("agents", "list", "--registrar", registrar_url, cwd=tmp_path)
    assert anonymous.returncode == 2
    assert "api_key_required" in anonymous.stderr
    database = f"sqlite:///{tmp_path / 'registrar.sqlite'}"
    created = _run(
        "api-keys", "create", "--role", "viewer", "--name", "ops", "--db", database, cwd=tmp_path
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("gak_")
    assert "not shown again" in created.stderr
    listing = _run(
        "agents", "list", "--registrar", registrar_url, cwd=tmp_path, GEOATTEST_API_KEY=key
    )
    assert listing.returncode == 0, listing.stderr
    assert "edge-cli" in listing.stdout
    assert "active" in listing.stdout
    keys = _run("api-keys", "list", "--db", database, cwd=tmp_path)
    assert "ops" in keys.stdout
    assert key not in keys.stdout  # only the hash is kept


def test_enrol_command_reports_refusal_code_and_exit_status(
    registrar_url: str,
    make_swtpm: Callable[..., SwtpmInstance],
    foreign_ca: SwtpmCa,
    tmp_path: Path,
) -> None:
    foreign = make_swtpm(ca=foreign_ca)
    refused = _run(
        "agent", "enrol", "--registrar", registrar_url, "--tcti", foreign.tcti, cwd=tmp_path
    )
    assert refused.returncode == 2
    assert "error: ek_untrusted:" in refused.stderr


def test_enrol_command_reports_an_unreachable_registrar(
    swtpm: SwtpmInstance, tmp_path: Path
) -> None:
    port = free_port_pair()
    registrar = f"http://127.0.0.1:{port}"
    result = _run("agent", "enrol", "--registrar", registrar, "--tcti", swtpm.tcti, cwd=tmp_path)
    assert result.returncode == 3
    assert "error: registrar_unreachable:" in result.stderr


def test_registrar_without_trust_store_refuses_to_start(tmp_path: Path) -> None:
    result = _run("registrar", "serve", "--db", f"sqlite:///{tmp_path / 'r.sqlite'}", cwd=tmp_path)
    assert result.returncode == 1
    assert "error: configuration_error: no EK trust store" in result.stderr
