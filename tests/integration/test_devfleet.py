"""The quickstart's main job, as ``deploy/quickstart --once`` runs it: twice on the same state."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from geoattest.swtpm import free_port_pair

pytestmark = [pytest.mark.swtpm, pytest.mark.slow]


def _fleet(state_dir: Path, port: int) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GEOATTEST_")}
    return subprocess.run(
        [
            sys.executable, "-m", "geoattest", "dev", "fleet", "--once",
            "--state-dir", str(state_dir), "--registrar-port", str(port), "--agents", "2",
        ],
        capture_output=True, text=True, timeout=180, env=env, check=False,
    )  # fmt: skip


def test_local_fleet_enrols_its_agents_and_a_second_run_reuses_the_state(tmp_path: Path) -> None:
    state_dir = tmp_path / "quickstart"
    first = _fleet(state_dir, free_port_pair())
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("state:                   active") == 2
    ak_names = re.findall(r"AK name:\s+([0-9a-f]+)", first.stdout)
    assert len(set(ak_names)) == 2

    second = _fleet(state_dir, free_port_pair())
    assert second.returncode == 0, second.stderr
    assert re.findall(r"AK name:\s+([0-9a-f]+)", second.stdout) == ak_names
    assert "manufacturing TPM" not in second.stdout
