"""What the local fleet prints about its agents: only what this run has verified, then changes.

A reused state directory holds the verifier's database of the previous run, where the agents
may still read ``attested``. An agent counts as verified by this run only once the verifier
reports a round that ended after the run started (``last_round_at``); until then it shows as
``waiting``. While the fleet serves, ``StatusWatch`` reports every change of state or reason,
so a failure shows in the terminal that runs the fleet.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import requests

WAITING = "waiting"  # no round of this run has ended yet
# States a round of this run can leave an agent in for good; the others move on by themselves.
SETTLED = frozenset({"attested", "failed", "paused"})
POLL_SECONDS = 0.3


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentLine:
    """One agent as this run knows it."""

    agent_id: str
    state: str
    reason: str | None
    message: str | None
    ima_entries: int | None
    last_round_at: datetime | None

    @property
    def verified(self) -> bool:
        return self.state == "attested"


def agent_line(status: Mapping[str, object], since: datetime) -> AgentLine:
    """An ``AgentLine`` from ``GET /v1/agents/<id>``, ``waiting`` unless a round ended since
    ``since``."""
    last = status.get("last_round_at")
    last_round_at = datetime.fromisoformat(last) if isinstance(last, str) else None
    fresh = last_round_at is not None and last_round_at >= since
    entries = status.get("ima_entries_verified")
    return AgentLine(
        agent_id=str(status["agent_id"]),
        state=str(status["state"]) if fresh else WAITING,
        reason=_text(status.get("reason")) if fresh else None,
        message=_text(status.get("message")) if fresh else None,
        ima_entries=entries if fresh and isinstance(entries, int) else None,
        last_round_at=last_round_at if fresh else None,
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


Get = Callable[[str], requests.Response]  # a GET of a verifier path, with the operator's key


def fetch_lines(get: Get, agent_ids: Iterable[str], since: datetime) -> list[AgentLine]:
    """Every agent's line; raises ``requests.RequestException`` when the verifier is down."""
    lines = []
    for agent_id in agent_ids:
        response = get(f"/v1/agents/{agent_id}")
        response.raise_for_status()
        lines.append(agent_line(response.json(), since))
    return lines


def wait_until_verified(
    get: Get, agent_ids: list[str], since: datetime, *, timeout: float
) -> list[AgentLine]:
    """Poll until a round of this run left every agent attested, failed or paused, or until
    ``timeout``; returns the last lines either way."""
    deadline = time.monotonic() + timeout
    while True:
        lines = fetch_lines(get, agent_ids, since)
        if all(line.state in SETTLED for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(POLL_SECONDS)


def format_table(lines: Iterable[AgentLine]) -> str:
    rows = [f"{'AGENT':<10} {'STATE':<12} {'IMA ENTRIES':>11}  {'LAST ROUND':<8}  REASON"]
    for line in lines:
        entries = "-" if line.ima_entries is None else str(line.ima_entries)
        last = "-" if line.last_round_at is None else line.last_round_at.astimezone().strftime("%X")
        rows.append(
            f"{line.agent_id:<10} {line.state:<12} {entries:>11}  {last:<8}  {line.reason or '-'}"
        )
    return "\n".join(rows)


class StatusWatch:
    """Remembers the last lines printed and describes what changed since."""

    def __init__(self, lines: Iterable[AgentLine]) -> None:
        self._last: dict[str, tuple[str, str | None]] = {
            line.agent_id: (line.state, line.reason) for line in lines
        }
        self._verifier_down = False

    def changes(self, lines: Iterable[AgentLine]) -> list[str]:
        """One text per agent whose state or reason changed (``agent: old -> new: reason``)."""
        found = ["verifier reachable again"] if self._verifier_down else []
        self._verifier_down = False
        for line in lines:
            now = (line.state, line.reason)
            before = self._last.get(line.agent_id)
            if now == before:
                continue
            self._last[line.agent_id] = now
            old = before[0] if before is not None else "-"
            text = f"{line.agent_id}: {old} -> {line.state}"
            if line.reason:
                text += f": {line.reason}"
            if line.message:
                text += f" ({line.message})"
            found.append(text)
        return found

    def verifier_down(self, error: Exception) -> list[str]:
        """A line the first time the verifier cannot be asked, none while it stays down."""
        if self._verifier_down:
            return []
        self._verifier_down = True
        return [f"verifier unreachable: {error}"]
