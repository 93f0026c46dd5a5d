"""What the local fleet prints: only rounds of this run count, and every change is reported."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import requests

from geoattest.dev.fleet_status import StatusWatch, agent_line, format_table

SINCE = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _status(state: str, last_round_at: datetime | None, **extra: object) -> dict[str, object]:
    return {
        "agent_id": "edge-01",
        "state": state,
        "reason": None,
        "message": None,
        "last_round_at": None if last_round_at is None else last_round_at.isoformat(),
        "ima_entries_verified": 5,
        **extra,
    }


def test_a_previous_runs_attested_is_shown_as_waiting() -> None:
    for stale in (None, SINCE - timedelta(seconds=1)):
        line = agent_line(_status("attested", stale), SINCE)
        assert (line.state, line.verified, line.ima_entries) == ("waiting", False, None)
        assert "edge-01    waiting" in format_table([line])


def test_a_round_of_this_run_is_shown_with_its_state() -> None:
    line = agent_line(_status("attested", SINCE + timedelta(seconds=2)), SINCE)
    assert (line.state, line.verified, line.ima_entries) == ("attested", True, 5)


def test_the_wire_format_of_the_verifier_parses() -> None:
    line = agent_line({**_status("failed", None), "last_round_at": "2026-12-01T12:00:03Z"}, SINCE)
    assert line.state == "failed"


def test_changes_are_reported_once_each() -> None:
    first = agent_line(_status("attested", SINCE + timedelta(seconds=1)), SINCE)
    watch = StatusWatch([first])
    assert watch.changes([first]) == []
    failed = agent_line(
        _status(
            "failed",
            SINCE + timedelta(seconds=5),
            reason="ima_entry_not_allowed",
            message="IMA line 7: file '/usr/bin/python3'",
        ),
        SINCE,
    )
    assert watch.changes([failed]) == [
        "edge-01: attested -> failed: ima_entry_not_allowed (IMA line 7: file '/usr/bin/python3')"
    ]
    assert watch.changes([failed]) == []


def test_a_verifier_outage_is_reported_once_and_its_end_too() -> None:
    line = agent_line(_status("attested", SINCE + timedelta(seconds=1)), SINCE)
    watch = StatusWatch([line])
    down = requests.ConnectionError("refused")
    assert watch.verifier_down(down) == ["verifier unreachable: refused"]
    assert watch.verifier_down(down) == []
    assert watch.changes([line]) == ["verifier reachable again"]
    assert watch.changes([line]) == []
