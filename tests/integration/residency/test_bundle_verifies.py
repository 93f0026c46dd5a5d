"""Residency bundles verified offline with nothing but the auditor's CA directory and the
published log keys (``tests/support/residency_bundles``). The swtpm end-to-end run is
``test_residency_proof_e2e.py``."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from geoattest.cli import main
from tests.support.residency_bundles import (
    Bundles,
    bundle_files,
    rounds_stored,
    verify_cli,
)
from tests.support.verifier_stack import settings_environment
from verifier.core.checkpoint import verify_checkpoint
from verifier.core.jwk import parse_public_keys
from verifier.export import layout

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def test_the_bundle_verifies_offline_and_its_counts_are_what_the_fleet_did(
    bundles: Bundles,
) -> None:
    result = verify_cli(bundles, bundles.both, "--json")
    assert result.exit_code == 4, result.output  # verified, and the window holds a failure
    report = json.loads(result.output)
    agents = {a["agent_id"]: a for a in report["agents"]}
    tampered, quiet = agents[bundles.tampered], agents[bundles.quiet]
    assert quiet["clean"] is True
    assert quiet["failed"] == 0
    assert quiet["gaps"] == []
    assert [f["reason"] for f in tampered["failures"]] == ["ima_entry_not_allowed"]
    assert tampered["other"] == 1  # the reboot seen (the other one came before re-admission)
    assert tampered["unreachable"] >= 1
    assert len(tampered["gaps"]) >= 2  # failed until re-admitted, and the outage
    events = bundles.fleet.verifier.events(bundles.tampered)
    to_states = [e["to_state"] for e in reversed(events)]
    assert to_states.count("failed") == 1
    assert to_states.count("unreachable") == 1
    for agent in (tampered, quiet):
        assert (
            agent["rounds"]
            == agent["passed"] + agent["failed"] + agent["unreachable"] + agent["other"]
        )
        assert agent["rounds"] == rounds_stored(bundles, agent["agent_id"])
        assert agent["records_verified"] > 0
    assert any("activation" in item for item in report["not_checked"])


def test_a_single_agent_bundle_of_a_clean_node_exits_0(bundles: Bundles) -> None:
    result = verify_cli(bundles, bundles.only_quiet)
    assert result.exit_code == 0, result.output
    assert "result: attested (and inside its zones) for the whole window" in result.output


def test_verification_is_deterministic(bundles: Bundles) -> None:
    first, second = verify_cli(bundles, bundles.both), verify_cli(bundles, bundles.both)
    assert first.output == second.output
    assert first.exit_code == second.exit_code == 4


def test_beat_signs_checkpoints_as_the_fleet_runs(bundles: Bundles) -> None:
    keys = parse_public_keys(bundles.keys.read_bytes())
    signed = verify_checkpoint(str(bundles.beat_checkpoint["checkpoint"]), keys)
    assert signed.checkpoint.size > 0  # kept records went into the log before any export
    assert signed.checkpoint.time >= bundles.start - dt.timedelta(seconds=5)


def test_export_at_a_moment_and_by_policy_from_the_command_line(
    bundles: Bundles, tmp_path: Path
) -> None:
    env = settings_environment(bundles.settings)
    moment = (bundles.start + (bundles.end - bundles.start) / 3).isoformat()
    at = CliRunner().invoke(
        main, ["export", "--agent", bundles.quiet, "--at", moment, "-o", str(tmp_path / "at.zip")],
        env=env,
    )  # fmt: skip
    assert at.exit_code == 0, at.output
    result = verify_cli(bundles, tmp_path / "at.zip", "--json")
    answer = json.loads(result.output)["agents"][0]["at"]
    assert answer["attested"] is True
    fleet = CliRunner().invoke(
        main,
        ["export", "--fleet", "--policy", "edge", "--from", bundles.start.isoformat(), "--to",
         bundles.end.isoformat(), "-o", str(tmp_path / "fleet.zip")],
        env=env,
    )  # fmt: skip
    assert fleet.exit_code == 0, fleet.output
    manifest = layout.decode_manifest(bundle_files(tmp_path / "fleet.zip")[layout.MANIFEST])
    assert {a.agent_id for a in manifest.agents} == {bundles.tampered, bundles.quiet}
    usage = CliRunner().invoke(main, ["export", "--fleet", "-o", str(tmp_path / "x.zip"),
                                      "--at", moment], env=env)  # fmt: skip
    assert usage.exit_code == 1
    assert "--fleet with one of --policy or --zone" in usage.output
