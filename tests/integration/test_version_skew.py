"""Version skew: an agent one protocol version older than its verifier, or newer, keeps attesting.

v1's schemas are frozen in ``tests.support.wire_v1``. An *old agent* parses requests with them
(refusing unknown fields) and answers in their shape; an *old verifier* sends v1 requests (every
field, defaults included) and parses answers with them. Both run against today's code: the
runner through the ``EvidenceSource`` seam, and today's agent code over its real HTTP view.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from geoattest.errors import MalformedRequest
from geoattest.pcr_banks import PcrBank
from geoattest.wire import EvidenceRequest, EvidenceResponse
from tests.support import wire_v1
from tests.support.agent_simulator import AgentSimulator
from tests.support.runner_stack import RunnerStack, runner_stack
from tests.support.simulated_source import SimulatedSource
from verifier.core.states import AgentState, Outcome

pytestmark = pytest.mark.redis


class OldAgent:
    """Wraps a simulator so that it speaks v1 exactly: v1 parsing of the request, v1 answer."""

    def __init__(self, sim: AgentSimulator) -> None:
        self._sim = sim
        self.agent_id = sim.agent_id

    def answer(self, body: bytes) -> tuple[int, bytes]:
        try:
            wire_v1.EvidenceRequest.model_validate_json(body)
        except ValidationError as e:
            error = MalformedRequest(f"bad evidence request: {e.error_count()} problem(s)")
            return 400, json.dumps(error.to_dict()).encode()
        status, answer = self._sim.answer(body)
        if status != 200:
            return status, answer
        old = wire_v1.EvidenceResponse.model_validate_json(answer)  # what v1 would have sent
        return 200, old.model_dump_json(exclude_none=True).encode()


@pytest.fixture
def stack(tmp_path: Path, redis_url: str) -> Iterator[RunnerStack]:
    with runner_stack(tmp_path, redis_url, agents=1) as running:
        yield running


def test_an_old_agent_keeps_attesting_with_a_new_verifier(stack: RunnerStack) -> None:
    agent_id = next(iter(stack.sims))
    sim = stack.sims[agent_id]
    old = OldAgent(sim)
    source: SimulatedSource = stack.source
    url = next(url for url, s in source.sims.items() if s is sim)
    source.sims[url] = old
    for _ in range(3):
        report = stack.round(agent_id)
        assert report is not None
        assert report.result.outcome is Outcome.PASSED, report.result.message
    assert stack.state(agent_id) is AgentState.ATTESTED


def test_a_new_agents_answer_parses_with_an_old_verifier(stack: RunnerStack) -> None:
    sim = next(iter(stack.sims.values()))
    old_request = wire_v1.EvidenceRequest(nonce="ab" * 32, pcrs={"sha256": [0, 10]})
    status, answer = sim.answer(old_request.model_dump_json().encode())  # v1 sends every field
    assert status == 200, answer
    old_view = wire_v1.EvidenceResponse.model_validate_json(answer)  # v1 refuses unknown fields
    assert old_view.quote.attest == EvidenceResponse.model_validate_json(answer).quote.attest


def test_todays_verifier_request_parses_with_an_old_agent() -> None:
    request = EvidenceRequest(nonce="cd" * 32, pcrs={PcrBank.SHA256: [0, 10]}, ima_offset=3)
    wire_v1.EvidenceRequest.model_validate_json(request.model_dump_json(exclude_defaults=True))


def test_a_newer_agents_extra_field_is_ignored_by_todays_verifier(stack: RunnerStack) -> None:
    sim = next(iter(stack.sims.values()))
    status, answer = sim.answer(
        EvidenceRequest(nonce="ef" * 32, pcrs={PcrBank.SHA256: [0]}).model_dump_json().encode()
    )
    assert status == 200
    newer = answer[:-1] + b',"added_in_v3":{"anything":[1,2,3]}}'
    assert EvidenceResponse.model_validate_json(newer).quote.attest
    with pytest.raises(ValidationError):  # and that is exactly what v1 could not do
        wire_v1.EvidenceResponse.model_validate_json(newer)
