from __future__ import annotations

import json
import logging

import pytest

from geoattest.log import JsonFormatter, bound, current_context


def test_bound_context_reaches_json_records_and_is_undone() -> None:
    record = logging.makeLogRecord({"msg": "round %s done", "args": ("r1",), "levelname": "INFO"})
    with bound(agent_id="edge-01"):
        assert current_context() == {"agent_id": "edge-01"}
        with bound(round_id="r1"):
            assert current_context() == {"agent_id": "edge-01", "round_id": "r1"}
        assert current_context() == {"agent_id": "edge-01"}
    assert current_context() == {}
    record.agent_id = "edge-01"
    line = json.loads(JsonFormatter().format(record))
    assert line["event"] == "round r1 done"
    assert line["agent_id"] == "edge-01"
    assert line["level"] == "info"


def test_context_survives_an_exception() -> None:
    with pytest.raises(RuntimeError), bound(agent_id="x"):
        raise RuntimeError
    assert current_context() == {}
