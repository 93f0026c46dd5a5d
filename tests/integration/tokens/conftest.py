"""The token service over HTTP with real Redis and SQLite, rounds by the production runner over
agent simulators, for every module of this package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.token_stack import TokenStack, token_stack


@pytest.fixture
def stack(tmp_path: Path, redis_url: str) -> Iterator[TokenStack]:
    with token_stack(tmp_path, redis_url, agents=2) as running:
        for agent_id, sim in running.runner.sims.items():
            sim.measure("/usr/bin/bash", content=b"bash")
            running.attest(agent_id)
        yield running
