"""The quickstart's main job, as ``deploy/quickstart`` runs it: the local fleet attests its agents,
the same state starts and stops again and again (no walk into TPM dictionary-attack lockout, and
a TPM already locked out is reset), the table shows only this run's rounds, and drift on a
running fleet is caught within seconds and printed where the fleet runs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests

from agent.tpm_device import TpmDevice
from geoattest.dev.procs import free_port
from geoattest.dev.swtpm import SwtpmInstance
from geoattest.dev.swtpm.lockout import LockoutState, lockout_state
from geoattest.pcr_banks import PcrBank
from tests.support.access import bearer

pytestmark = [pytest.mark.swtpm, pytest.mark.redis, pytest.mark.slow]

GEOATTEST = [sys.executable, "-m", "geoattest"]


def _env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("GEOATTEST_")}


def _fleet_argv(state_dir: Path, *extra: str, agents: int = 2) -> list[str]:
    return [
        *GEOATTEST, "dev", "fleet", "--state-dir", str(state_dir), "--agents", str(agents),
        "--registrar-port", str(free_port()), "--verifier-port", str(free_port()), *extra,
    ]  # fmt: skip


def _run_once(state_dir: Path, *, agents: int = 2) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _fleet_argv(state_dir, "--once", agents=agents),
        capture_output=True, text=True, timeout=300, env=_env(), check=False,
    )  # fmt: skip


def _last_round(output: str, agent_id: str, started: datetime) -> datetime:
    """The LAST ROUND of ``agent_id``'s row in the fleet's table (local time of day), as a moment
    near ``started``; fails when the row is not ``attested`` with a round of its own."""
    found = re.search(rf"^{agent_id}\s+attested\s+\d+\s+(\d\d:\d\d:\d\d)\s", output, re.M)
    assert found, output
    clock = datetime.strptime(found.group(1), "%H:%M:%S").time()
    moment = datetime.combine(started.date(), clock, started.tzinfo)
    return moment + timedelta(days=1) if moment < started - timedelta(hours=12) else moment


def _da_state(state_dir: Path, agent_id: str) -> LockoutState:
    """The DA counters of a stopped fleet's TPM (started, read, stopped in order)."""
    with SwtpmInstance(state_dir / "tpm" / agent_id) as swtpm:
        return lockout_state(swtpm.tcti)


def test_local_fleet_attests_its_agents_and_a_second_run_reuses_the_state(tmp_path: Path) -> None:
    state_dir = tmp_path / "quickstart"
    first = _run_once(state_dir)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.count("state:                   active") == 2
    assert re.search(r"^edge-01\s+attested\s+\d+", first.stdout, re.MULTILINE)
    assert re.search(r"^edge-02\s+attested\s+\d+", first.stdout, re.MULTILINE)
    # each agent enrolled the receiver it reads, as ``agent enrol --gnss`` does (issue 14)
    receivers = re.findall(r"^GNSS receiver:\s+file (\S+): unidentified$", first.stdout, re.M)
    assert receivers == [
        str(state_dir.resolve() / "gnss" / f"{a}.nmea") for a in ("edge-01", "edge-02")
    ]
    ak_names = re.findall(r"AK name:\s+([0-9a-f]+)", first.stdout)
    assert len(set(ak_names)) == 2

    second = _run_once(state_dir)
    assert second.returncode == 0, second.stdout + second.stderr
    assert re.findall(r"AK name:\s+([0-9a-f]+)", second.stdout) == ak_names
    assert "manufacturing TPM" not in second.stdout
    assert re.search(r"^edge-01\s+attested", second.stdout, re.MULTILINE)


def test_the_same_state_starts_and_stops_again_and_again(tmp_path: Path) -> None:
    """Every run enrols and attests anew, and its table shows a round of that run. No run needed
    the lockout reset: the TPM was shut down in order each time (the DA counter stays 0 after
    every run). Four runs: one more than the unclean stops that put swtpm in lockout (3)."""
    state_dir = tmp_path / "quickstart"
    for run in range(4):
        started = datetime.now().astimezone().replace(microsecond=0)
        done = _run_once(state_dir, agents=1)
        assert done.returncode == 0, f"run {run + 1}:\n{done.stdout}{done.stderr}"
        assert "state:                   active" in done.stdout, done.stdout
        assert _last_round(done.stdout, "edge-01", started) >= started, done.stdout
        assert "DA lockout" not in done.stdout + done.stderr
        assert _da_state(state_dir, "edge-01").failed_tries == 0, f"run {run + 1}"


def test_a_tpm_left_in_lockout_is_reset_and_the_fleet_attests(tmp_path: Path) -> None:
    state_dir = tmp_path / "quickstart"
    assert _run_once(state_dir, agents=1).returncode == 0
    with SwtpmInstance(state_dir / "tpm" / "edge-01") as swtpm:
        max_tries = lockout_state(swtpm.tcti).max_tries
        for _ in range(max_tries):  # what a fleet killed with SIGKILL leaves behind
            with TpmDevice(swtpm.tcti) as device:
                device.quote(b"nonce", {PcrBank.SHA256: [0]})
            swtpm.restart(orderly=False)
        assert lockout_state(swtpm.tcti).in_lockout
    done = _run_once(state_dir, agents=1)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"edge-01: TPM was in DA lockout ({max_tries} of {max_tries} failures" in done.stdout
    assert re.search(r"^edge-01\s+attested\s+\d+", done.stdout, re.MULTILINE)
    assert _da_state(state_dir, "edge-01").failed_tries == 0


def test_drift_on_a_running_fleet_fails_the_agent_within_seconds(tmp_path: Path) -> None:
    """Stopped with Ctrl-C as a terminal sends it (SIGINT to the whole process group), the fleet
    still shuts every TPM down in order."""
    state_dir = tmp_path / "quickstart"
    log = (tmp_path / "fleet.out").open("w")
    fleet = subprocess.Popen(
        _fleet_argv(state_dir),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=_env(),
        start_new_session=True,
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
        printed = "edge-01: attested -> failed: ima_entry_not_allowed"
        while printed not in (tmp_path / "fleet.out").read_text():
            assert time.monotonic() - started < 20, (tmp_path / "fleet.out").read_text()
            time.sleep(0.2)
    finally:
        os.killpg(fleet.pid, signal.SIGINT)
        fleet.wait(timeout=60)
        log.close()
    assert fleet.returncode == 0, (tmp_path / "fleet.out").read_text()
    assert "fleet stopped" in (tmp_path / "fleet.out").read_text()
    for agent_id in ("edge-01", "edge-02"):
        assert _da_state(state_dir, agent_id).failed_tries == 0


def test_the_quickstart_fleet_shows_each_tamper_the_border_and_a_token(tmp_path: Path) -> None:
    """The default fleet (five agents on demo tracks under a geofencing policy): edge-05 on a zone
    border is failed as ``uncertain``; the printed login works; a workload gets a PoG token;
    ``geoattest fleet tamper`` fails each agent with the reason of its tamper, the others stay."""
    state_dir = tmp_path / "qs"
    out = tmp_path / "fleet.out"
    log = out.open("w")
    argv = [*GEOATTEST, "dev", "fleet", "--state-dir", str(state_dir),
            "--registrar-port", str(free_port()), "--verifier-port", str(free_port())]  # fmt: skip
    fleet = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=_env(),
                             start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while "fleet running" not in out.read_text():
            assert fleet.poll() is None, out.read_text()
            assert time.monotonic() < deadline, "fleet did not start"
            time.sleep(0.5)
        text = out.read_text()
        for agent_id in ("edge-01", "edge-02", "edge-03", "edge-04"):
            assert re.search(rf"^{agent_id}\s+attested\s+\d+", text, re.M), text
        assert re.search(r"^edge-05\s+failed\s.*location_outside_zone$", text, re.M), text
        dashboard = re.search(r"^dashboard\s+(http://\S+/dashboard/)$", text, re.M)
        key = re.search(r"operator API key \(admin\): (gak_\S+)$", text, re.M)
        assert dashboard, text
        assert key, text
        verifier_url = dashboard.group(1).removesuffix("/dashboard/")
        assert requests.get(dashboard.group(1), timeout=5).status_code == 200
        who = requests.get(f"{verifier_url}/v1/whoami", headers=bearer(key.group(1)), timeout=5)
        assert who.json()["role"] == "admin"

        def status(agent_id: str) -> dict[str, object]:
            answer = requests.get(f"{verifier_url}/v1/agents/{agent_id}",
                                  headers=bearer(key.group(1)), timeout=5)  # fmt: skip
            body: dict[str, object] = answer.json()
            return body

        assert "uncertain" in str(status("edge-05")["message"])
        # edge-04 pushes (ADR 19): attested from its own posts, tampered with like the others
        assert status("edge-04")["mode"] == "push"
        assert "edge-04 pushes: it asks https://127.0.0.1:" in text
        token_line = re.search(r"^a token:\s+(geoattest token get .*)$", text, re.M)
        assert token_line, text
        got = subprocess.run(
            [*GEOATTEST, *token_line.group(1).split()[1:]],
            capture_output=True, text=True, timeout=60, env=_env(), check=False,
        )  # fmt: skip
        assert got.returncode == 0, got.stderr
        assert got.stdout.count(".") == 2  # a compact JWS

        tampers = {"edge-01": ("--ima", "ima_entry_not_allowed"),
                   "edge-02": ("--pcr", "boot_pcr_mismatch"),
                   "edge-03": ("--teleport", "location_implausible"),
                   "edge-04": ("--gnss-off", "location_missing")}  # fmt: skip
        for agent_id, (flag, reason) in tampers.items():
            done = subprocess.run(
                [*GEOATTEST, "fleet", "tamper", agent_id, flag, "--state-dir", str(state_dir)],
                capture_output=True, text=True, timeout=60, env=_env(), check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert f"expect {agent_id} failed with {reason}" in done.stdout
            started = time.monotonic()
            while status(agent_id)["state"] != "failed":
                assert time.monotonic() - started < 20, status(agent_id)
                time.sleep(0.2)
            assert status(agent_id)["reason"] == reason
            for other in tampers:  # the agents not tampered with yet stay attested
                if list(tampers).index(other) > list(tampers).index(agent_id):
                    assert status(other)["state"] == "attested", other
        unknown = subprocess.run(
            [*GEOATTEST, "fleet", "tamper", "edge-99", "--ima", "--state-dir", str(state_dir)],
            capture_output=True, text=True, timeout=60, env=_env(), check=False,
        )  # fmt: skip
        assert unknown.returncode != 0
        assert "no agent 'edge-99'" in unknown.stderr
    finally:
        os.killpg(fleet.pid, signal.SIGINT)
        fleet.wait(timeout=90)
        log.close()
    assert fleet.returncode == 0, out.read_text()
    assert "fleet stopped" in out.read_text()
