"""Push mode (ADR 19) end to end: real swtpm agents ask the verifier's push listener (real mTLS
over loopback) for challenges and post their evidence; the real verifier (API, Celery worker and
beat, redis-server, SQLite) judges and records it like a pull round.

The push nodes keep their pull API serving on purpose: the scheduler must not poll them, which
their record counts (one per post, none more) show.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import requests

from agent.push import PushClient
from geoattest.dev.procs import GEOATTEST, free_port, managed_process, port_accepts
from tests.integration.push.calls import (
    children_of,
    error_code,
    post_body,
    push_client,
    raw_post,
)
from tests.integration.push.conftest import Push
from tests.support.swtpm_agent import Node
from tests.support.verifier_stack import settings_environment

pytestmark = [pytest.mark.swtpm, pytest.mark.redis, pytest.mark.slow]


def test_push_agent_attests_holds_its_lease_and_goes_stale_when_it_stops(
    push: Push, nodes: Callable[[str], Node]
) -> None:
    node = nodes("push")
    client = push_client(push, node)
    verdicts = [client.round() for _ in range(3)]
    assert [v.outcome for v in verdicts] == ["passed"] * 3
    assert [v.record_seq for v in verdicts] == [1, 2, 3]
    status = push.stack.verifier.status(node.agent_id)
    assert (status["state"], status["mode"]) == ("attested", "push")
    time.sleep(1.0)  # two pull intervals: a polled agent would have more records by now
    assert push.stack.verifier.status(node.agent_id)["records"] == 3
    stale = push.stack.verifier.wait_for_state(node.agent_id, "stale", timeout=15)
    assert stale["reason"] == "lease_expired"
    assert client.round().state == "attested"  # posting again attests it again
    client.close()


def test_pull_and_push_agents_in_one_fleet_and_a_tampered_push_agent_fails(
    push: Push, nodes: Callable[[str], Node]
) -> None:
    pull, pushed = nodes("pull"), nodes("push")
    client = push_client(push, pushed)
    assert client.round().state == "attested"
    push.stack.verifier.wait_for_state(pull.agent_id, "attested")
    listing = push.stack.verifier.get("/v1/agents").json()
    modes = {row["agent_id"]: row.get("mode") for row in listing["agents"]}
    assert (modes[pull.agent_id], modes[pushed.agent_id]) == ("pull", "push")
    pushed.ima.measure("/tmp/.hidden/miner", b"not in any policy")
    verdict = client.round()
    assert (verdict.outcome, verdict.state, verdict.reason) == (
        "integrity_failure",
        "failed",
        "ima_entry_not_allowed",
    )
    assert push.stack.verifier.status(pushed.agent_id)["state"] == "failed"
    assert push.stack.verifier.status(pull.agent_id)["state"] == "attested"
    client.close()


def test_a_challenge_whose_round_moved_on_is_stale_not_a_failure(
    push: Push, nodes: Callable[[str], Node]
) -> None:
    """An agent whose post is slow asks again; the second challenge is issued while the first
    round still runs, from the IMA offset before it. Judged after that round committed, it
    would look like a rewound IMA log and fail an honest agent."""
    node = nodes("push")
    client = push_client(push, node)
    assert client.round().state == "attested"
    node.ima.measure("/usr/bin/bash", b"bash")  # an allowed entry: the first post moves the offset
    first = post_body(client, node, client.challenge())
    hot = redis.Redis.from_url(push.stack.verifier.settings.redis_url)
    hot.set(f"geoattest:lock:{node.agent_id}", "held-by-a-slow-round", px=10_000)
    answers: list[requests.Response] = []
    posting = threading.Thread(target=lambda: answers.append(raw_post(client, first)))
    posting.start()  # it waits for the lock
    time.sleep(0.5)
    second = client.challenge()  # issued while the first round has not committed
    hot.delete(f"geoattest:lock:{node.agent_id}")
    posting.join(timeout=15)
    assert answers[0].status_code == 200
    assert answers[0].json()["outcome"] == "passed"
    stale = raw_post(client, post_body(client, node, second))
    assert (stale.status_code, error_code(stale)) == (409, "push_challenge_stale")
    assert push.stack.verifier.status(node.agent_id)["state"] == "attested"
    assert client.round().outcome == "passed"  # a new challenge asks from the new offset
    hot.close()
    client.close()


def test_the_listener_serves_from_several_processes_on_one_port(
    push: Push, nodes: Callable[[str], Node], tmp_path: Path
) -> None:
    port = free_port()
    settings = push.stack.verifier.settings.model_copy(
        update={"push_port": port, "push_processes": 2}
    )
    node = nodes("push")
    with managed_process(
        "push listener, 2 processes",
        [*GEOATTEST, "verifier", "push-serve"],
        log_path=tmp_path / "push.log",
        ready=lambda: port_accepts(port),
        env=settings_environment(settings),
    ) as listener:
        deadline = time.monotonic() + 20  # children start one after another
        while len(children_of(listener.pid)) < 2:
            assert time.monotonic() < deadline, children_of(listener.pid)
            time.sleep(0.1)
        clients = [
            PushClient(
                f"https://127.0.0.1:{port}",
                node.agent_id,
                node.services[0],
                client_cert=(node.state_dir / "server.pem", node.state_dir / "server-key.pem"),
                verifier_ca=push.stack.verifier.client_ca,
                timeout=10.0,
            )
            for _ in range(4)  # four connections: the kernel spreads them over the processes
        ]
        verdicts = [client.round() for client in clients for _ in range(2)]
        assert [v.outcome for v in verdicts] == ["passed"] * 8
        assert [v.record_seq for v in verdicts] == list(range(1, 9))  # one chain, no fork
        for client in clients:
            client.close()
