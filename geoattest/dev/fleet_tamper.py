"""Tampering with a running local fleet's agent, to watch each detection live.

``geoattest fleet tamper AGENT --ima|--pcr|--teleport|--gnss-off`` (``geoattest.cli_dev``)
changes what the node is or where it is, never the verifier:

- ``ima``: an executable the policy does not know is measured (IMA log and PCR 10):
  ``ima_entry_not_allowed``;
- ``pcr``: PCR 7 (secure boot state) is extended, as a changed boot would leave it:
  ``boot_pcr_mismatch``;
- ``teleport``: the GNSS receiver now replays a track 880 km away (Paris):
  ``location_implausible`` (too fast to be real);
- ``gnss_off``: the GNSS receiver goes silent (its track file removed): ``location_missing``.

Each is undone by the next run of the fleet (a new boot and the agent's own track again) and
``geoattest verifier agents readmit AGENT`` re-admits the agent.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from agent.tpm_device import TpmDevice
from geoattest.dev.demo_geo import DEMO_DIR, TELEPORT_SITE
from geoattest.dev.ima_emulator import ImaEmulator
from geoattest.errors import ConfigurationError
from geoattest.pcr_banks import PcrBank

__all__ = ["EXPECTED_REASON", "Tamper", "tamper"]

IMPLANT_PATH = "/usr/local/bin/implant"  # what ``ima`` says was executed
TAMPERED_PCR = 7


class Tamper(enum.StrEnum):
    IMA = "ima"
    PCR = "pcr"
    TELEPORT = "teleport"
    GNSS_OFF = "gnss_off"


EXPECTED_REASON = {
    Tamper.IMA: "ima_entry_not_allowed",
    Tamper.PCR: "boot_pcr_mismatch",
    Tamper.TELEPORT: "location_implausible",
    Tamper.GNSS_OFF: "location_missing",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class _Node:
    tcti: str
    ima_log: Path
    track: Path


def tamper(state_dir: Path, agent_id: str, how: Tamper) -> str:
    """Apply ``how`` to ``agent_id`` of the fleet running in ``state_dir``; what was done.

    Raises ``ConfigurationError`` when no fleet runs there or it has no such agent."""
    node = _node(state_dir, agent_id)
    if how is Tamper.IMA:
        ima = ImaEmulator(node.tcti, node.ima_log)
        entry = ima.measure(IMPLANT_PATH, os.urandom(64))  # contents no policy has seen
        return f"measured {IMPLANT_PATH} on {agent_id}: {entry.line}"
    if how is Tamper.PCR:
        digest = hashlib.sha256(b"geoattest fleet tamper: secure boot disabled").digest()
        with TpmDevice(node.tcti) as device:
            device.pcr_extend(TAMPERED_PCR, {PcrBank.SHA256: digest})
        return f"extended PCR {TAMPERED_PCR} (sha256) of {agent_id} with {digest.hex()[:16]}…"
    if how is Tamper.TELEPORT:
        shutil.copyfile(DEMO_DIR / "tracks" / f"{TELEPORT_SITE}.nmea", node.track)
        return f"{agent_id}'s GNSS receiver now replays {TELEPORT_SITE} ({node.track})"
    node.track.unlink(missing_ok=True)
    return f"{agent_id}'s GNSS receiver is silent ({node.track} removed)"


def _node(state_dir: Path, agent_id: str) -> _Node:
    fleet_file = state_dir / "fleet.json"
    if not fleet_file.is_file():
        raise ConfigurationError(f"no running fleet in {state_dir} (start 'geoattest dev fleet')")
    agents = json.loads(fleet_file.read_text())["agents"]
    if agent_id not in agents:
        raise ConfigurationError(f"no agent {agent_id!r} in the fleet ({', '.join(agents)})")
    found = agents[agent_id]
    if "track" not in found:
        raise ConfigurationError(f"{fleet_file} is from an older fleet: restart the fleet")
    return _Node(tcti=found["tcti"], ima_log=Path(found["ima_log"]), track=Path(found["track"]))
