"""The quickstart's main job, as ``deploy/quickstart`` runs it: the local fleet attests its agents,
a second run reuses the state, and drift on a running fleet is caught within seconds."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from geoattest.dev.procs import free_port
from tests.support.access import bearer

pytestmark = [pytest.mark.swtpm, pytest.mark.redis, pytest.mark.slow]

GEOATTEST = [sys.executable, "-m", "geoattest"]


def _env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("GEOATTEST_")}


def _fleet_argv(state_dir: Path, *extra: str) -> list[str]:
    return [
        *GEOATTEST, "dev", "fleet", "--state-dir", str(state_dir), "--agents", "2",
        "--registrar-port", str(free_port()), "--verifier-port", str(free_port()), *extra,
    ]  # fmt: skip


def _run_once(state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _fleet_argv(state_dir, "--once"),
        capture_output=True, text=True, timeout=300, env=_env(), check=False,
    )  # fmt: skip


def test_local_fleet_attests_its_agents_and_a_second_run_reuses_the_state(tmp_path: Path) -> None:
    state_dir = tmp_path / "quickstart"
    first = _run_once(state_dir)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.count("state:                   active") == 2
    assert re.search(r"^edge-01\s+attested\s+\d+", first.stdout, re.MULTILINE)
    assert re.search(r"^edge-02\s+attested\s+\d+", first.stdout, re.MULTILINE)
    ak_names = re.findall(r"AK name:\s+([0-9a-f]+)", first.stdout)
    assert len(set(ak_names)) == 2

    second = _run_once(state_dir)
    assert second.returncode == 0, second.stdout + second.stderr
    assert re.findall(r"AK name:\s+([0-9a-f]+)", second.stdout) == ak_names
    assert "manufacturing TPM" not in second.stdout
    assert re.search(r"^edge-01\s+attested", second.stdout, re.MULTILINE)


def test_drift_on_a_running_fleet_fails_the_agent_within_seconds(tmp_path: Path) -> None:
    state_dir = tmp_path / "quickstart"
    log = (tmp_path / "fleet.out").open("w")
    fleet = subprocess.Popen(
        _fleet_argv(state_dir), stdout=log, stderr=subprocess.STDOUT, env=_env()
    )
    try:
        deadline = time.monotonic() + 240
        while "fleet running" not in (tmp_path / "fleet.out").read_text():
            assert fleet.poll() is None, (tmp_path / "fleet.out").read_text()
            assert time.monotonic() < deadline, "fleet did not start"
            time.sleep(0.5)
        verifier_url = json.loads((state_dir / "fleet.json").read_text())["verifier_url"]
        operator = bearer((state_dir / "api-keys" / "operator.key").read_text().strip())
        anonymous = requests.get(f"{verifier_url}/v1/agents/edge-01", timeout=5)
        assert anonymous.status_code == 401  # the fleet's routes need its operator's key
        measure = [*GEOATTEST, "dev", "measure", "--state-dir", str(state_dir)]
        measured = subprocess.run(
            [*measure, "edge-01", sys.executable],
            capture_output=True, text=True, timeout=60, env=_env(), check=False,
        )  # fmt: skip
        assert measured.returncode == 0, measured.stderr
        started = time.monotonic()
        status: dict[str, object] = {}
        while time.monotonic() - started < 15:
            status = requests.get(
                f"{verifier_url}/v1/agents/edge-01", headers=operator, timeout=5
            ).json()
            if status["state"] == "failed":
                break
            time.sleep(0.2)
        assert status["state"] == "failed", status
        assert status["reason"] == "ima_entry_not_allowed"
        other = requests.get(
            f"{verifier_url}/v1/agents/edge-02", headers=operator, timeout=5
        ).json()
        assert other["state"] == "attested"
    finally:
        fleet.send_signal(signal.SIGINT)
        fleet.wait(timeout=60)
        log.close()
    assert fleet.returncode == 0
