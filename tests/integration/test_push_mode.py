"""Push mode (ADR 19) end to end: real swtpm agents ask the verifier's push listener (real mTLS
over loopback) for challenges and post their evidence; the real verifier (API, Celery worker and
beat, redis-server, SQLite) judges and records it like a pull round.

The push nodes keep their pull API serving on purpose: the scheduler must not poll them, which
their record counts (one per post, none more) show.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import requests

from agent.push import PushClient
from geoattest.dev.procs import free_port
from geoattest.dev.swtpm import SwtpmCa
from geoattest.errors import PushChallengeRateLimited
from geoattest.tls_material import self_signed_server_certificate, write_certified_key
from geoattest.wire_push import PushChallengeView, PushEvidencePost
from tests.support import MakeSwtpm
from tests.support.swtpm_agent import Node, sha256_of, start_node, swtpm_node_policy
from tests.support.verifier_stack import ServiceStack, service_stack
from verifier.engine.push import PushChallenges
from verifier.push_serve import build_push_server

pytestmark = [pytest.mark.swtpm, pytest.mark.redis, pytest.mark.slow]

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


def _client(push: Push, node: Node, agent_id: str | None = None) -> PushClient:
    return PushClient(
        push.url,
        agent_id or node.agent_id,
        node.services[0],
        client_cert=(node.state_dir / "server.pem", node.state_dir / "server-key.pem"),
        verifier_ca=push.stack.verifier.client_ca,
        timeout=10.0,
    )


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


def _raw_post(client: PushClient, body: str) -> requests.Response:
    return client._http.post(  # the agent's own mTLS session, to send what an attacker would
        client._url + "/v1/push/evidence",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
        timeout=10,
        verify=client._verify,
    )


def _post_body(client: PushClient, node: Node, challenge: PushChallengeView) -> str:
    evidence = node.services[0].collect(challenge.request)
    return PushEvidencePost(
        agent_id=node.agent_id, nonce=challenge.request.nonce, evidence=evidence
    ).model_dump_json(exclude_defaults=True)


def _code(response: requests.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


def test_push_agent_attests_holds_its_lease_and_goes_stale_when_it_stops(
    push: Push, nodes: Callable[[str], Node]
) -> None:
    node = nodes("push")
    client = _client(push, node)
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


def test_consecutive_challenges_differ(push: Push, nodes: Callable[[str], Node]) -> None:
    client = _client(push, nodes("push"))
    nonces = {client.challenge().request.nonce for _ in range(5)}
    assert len(nonces) == 5
    assert all(len(bytes.fromhex(n)) == 32 for n in nonces)
    client.close()


def test_replayed_post_is_refused(push: Push, nodes: Callable[[str], Node]) -> None:
    node = nodes("push")
    client = _client(push, node)
    body = _post_body(client, node, client.challenge())
    assert _raw_post(client, body).status_code == 200
    replay = _raw_post(client, body)
    assert (replay.status_code, _code(replay)) == (403, "push_challenge_unknown")
    client.challenge()  # a newer challenge outstanding changes nothing: the old one is used up
    replay = _raw_post(client, body)
    assert (replay.status_code, _code(replay)) == (403, "push_challenge_unknown")
    assert push.stack.verifier.status(node.agent_id)["records"] == 1
    client.close()


def test_a_nonce_answers_one_post_even_when_two_race(
    push: Push, nodes: Callable[[str], Node]
) -> None:
    node = nodes("push")
    client = _client(push, node)
    body = _post_body(client, node, client.challenge())
    answers: list[int] = []
    threads = [
        threading.Thread(target=lambda: answers.append(_raw_post(client, body).status_code))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [200, 403]
    client.close()


def test_late_post_is_refused(push: Push, nodes: Callable[[str], Node]) -> None:
    node = nodes("push")
    client = _client(push, node)
    body = _post_body(client, node, client.challenge())
    time.sleep(CHALLENGE_SECONDS + 0.5)  # expired, though Redis still holds the key
    late = _raw_post(client, body)
    assert (late.status_code, _code(late)) == (403, "push_challenge_unknown")
    assert "expired" in late.json()["error"]["message"]
    client.close()


def test_nonce_issued_to_another_agent_is_refused(push: Push, nodes: Callable[[str], Node]) -> None:
    a, b = nodes("push"), nodes("push")
    client_a, client_b = _client(push, a), _client(push, b)
    challenge_b = client_b.challenge()
    evidence = a.services[0].collect(challenge_b.request)
    body = PushEvidencePost(
        agent_id=a.agent_id, nonce=challenge_b.request.nonce, evidence=evidence
    ).model_dump_json(exclude_defaults=True)
    refused = _raw_post(client_a, body)
    assert (refused.status_code, _code(refused)) == (403, "push_challenge_unknown")
    # Nor may A speak for B with its own certificate.
    posing = _client(push, a, agent_id=b.agent_id)
    with pytest.raises(Exception, match="push_certificate_refused"):
        posing.challenge()
    assert client_b.post(challenge_b).outcome == "passed"  # B's challenge still stands
    for client in (client_a, client_b, posing):
        client.close()


def test_unregistered_certificates_are_refused(
    push: Push, nodes: Callable[[str], Node], tmp_path: Path
) -> None:
    pull = nodes("pull")
    stranger = self_signed_server_certificate(pull.agent_id, ["127.0.0.1"])
    cert, key = tmp_path / "stranger.pem", tmp_path / "stranger-key.pem"
    write_certified_key(stranger, cert, key)
    session = requests.Session()
    for identity in (
        (cert, key),
        (pull.state_dir / "server.pem", pull.state_dir / "server-key.pem"),
    ):
        session.cert = (str(identity[0]), str(identity[1]))
        with pytest.raises(requests.exceptions.ConnectionError):  # the handshake refuses it
            session.post(
                push.url + "/v1/push/challenge",
                json={"agent_id": pull.agent_id},
                timeout=5,
                verify=str(push.stack.verifier.client_ca),
            )
    session.close()


def test_pull_and_push_agents_in_one_fleet_and_a_tampered_push_agent_fails(
    push: Push, nodes: Callable[[str], Node]
) -> None:
    pull, pushed = nodes("pull"), nodes("push")
    client = _client(push, pushed)
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


def test_challenges_are_rate_limited_per_agent(push: Push) -> None:
    client = redis.Redis.from_url(push.stack.verifier.settings.redis_url)
    challenges = PushChallenges(client, lifetime=5.0, per_minute=3, clock=lambda: 6_000_000.0)
    for _ in range(3):
        challenges.issue("rate-limited-agent")
    with pytest.raises(PushChallengeRateLimited):
        challenges.issue("rate-limited-agent")
    challenges.issue("another-agent")  # the limit is each agent's own
    keys = client.keys("geoattest:push-challenge:rate-limited-agent*")
    assert len(keys) == 1  # one outstanding challenge per agent, however many were asked for
    client.close()
