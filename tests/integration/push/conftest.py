"""The push-mode stack (ADR 19) for every module of this package: the real verifier (API,
Celery worker and beat, redis-server, SQLite) with its push listener on real mTLS over loopback,
and real swtpm nodes added to it in either mode."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from geoattest.dev.procs import free_port
from geoattest.dev.swtpm import SwtpmCa
from tests.support import MakeSwtpm
from tests.support.swtpm_agent import Node, sha256_of, start_node, swtpm_node_policy
from tests.support.verifier_stack import ServiceStack, service_stack
from verifier.push_serve import build_push_server

ALLOWED = {"/usr/bin/bash": b"bash"}
CHALLENGE_SECONDS = 1.5


class Push:
    def __init__(self, stack: ServiceStack, url: str) -> None:
        self.stack = stack
        self.url = url


@pytest.fixture(scope="module")
def push(tmp_path_factory: pytest.TempPathFactory, test_ca: SwtpmCa) -> Iterator[Push]:
    work = tmp_path_factory.mktemp("push-mode")
    policies = {"swtpm-edge": swtpm_node_policy(sha256_of(ALLOWED))}
    with service_stack(
        work,
        test_ca.trust_store,
        policies=policies,
        push_port=free_port(),
        push_challenge_seconds=CHALLENGE_SECONDS,
    ) as stack:
        server, runtime = build_push_server(stack.verifier.settings, lambda _delivery: None)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield Push(stack, f"https://127.0.0.1:{server.server_port}")
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            runtime.close()


@pytest.fixture
def nodes(
    push: Push, make_swtpm: MakeSwtpm, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[str], Node]]:
    made: list[Node] = []

    def make(mode: str) -> Node:
        agent_id = f"{request.node.name[5:30].replace('_', '-')}-{len(made)}"
        node = start_node(
            make_swtpm(),
            tmp_path / f"n{len(made)}",
            agent_id,
            client_ca=push.stack.verifier.client_ca,
            registrar=push.stack.registrar,
        )
        made.append(node)
        response = push.stack.verifier.request(
            "POST", f"/v1/agents/{agent_id}", json={"policy": "swtpm-edge", "mode": mode}
        )
        assert response.status_code == 201, response.text
        return node

    yield make
    for node in made:
        node.stop_api()
    push.stack.verifier.forget(push.stack.registrar.client(), [n.agent_id for n in made])
