"""Push mode (ADR 19) under attack: a replayed, raced, late or misdirected post, a nonce of
another agent, an unregistered or shared certificate, a CA certificate registered as an agent's,
a flood of challenges, a body announced without a challenge. Each is refused, with its error
code, on the real listener (real mTLS over loopback) and the real verifier.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from geoattest.errors import PushChallengeRateLimited, PushRefused
from geoattest.pcr_banks import PcrBank
from geoattest.tls_material import (
    create_client_ca,
    self_signed_server_certificate,
    write_certified_key,
)
from geoattest.wire import EvidenceRequest
from geoattest.wire_push import PushEvidencePost
from tests.integration.push.calls import (
    add_agent,
    enrolled_with,
    error_code,
    post_body,
    push_client,
    raw_post,
    tls_to_listener,
)
from tests.integration.push.conftest import CHALLENGE_SECONDS, Push
from tests.support import MakeSwtpm
from tests.support.swtpm_agent import Node
from verifier.engine.push import PushChallenges

pytestmark = [pytest.mark.swtpm, pytest.mark.redis, pytest.mark.slow]


def test_consecutive_challenges_differ(push: Push, nodes: Callable[[str], Node]) -> None:
    client = push_client(push, nodes("push"))
    nonces = {client.challenge().request.nonce for _ in range(5)}
    assert len(nonces) == 5
    assert all(len(bytes.fromhex(n)) == 32 for n in nonces)
    client.close()


def test_replayed_post_is_refused(push: Push, nodes: Callable[[str], Node]) -> None:
    node = nodes("push")
    client = push_client(push, node)
    body = post_body(client, node, client.challenge())
    assert raw_post(client, body).status_code == 200
    replay = raw_post(client, body)
    assert (replay.status_code, error_code(replay)) == (403, "push_challenge_unknown")
    client.challenge()  # a newer challenge outstanding changes nothing: the old one is used up
    replay = raw_post(client, body)
    assert (replay.status_code, error_code(replay)) == (403, "push_challenge_unknown")
    assert push.stack.verifier.status(node.agent_id)["records"] == 1
    client.close()


def test_a_nonce_answers_one_post_even_when_two_race(
    push: Push, nodes: Callable[[str], Node]
) -> None:
    node = nodes("push")
    client = push_client(push, node)
    body = post_body(client, node, client.challenge())
    answers: list[int] = []
    threads = [
        threading.Thread(target=lambda: answers.append(raw_post(client, body).status_code))
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
    client = push_client(push, node)
    body = post_body(client, node, client.challenge())
    time.sleep(CHALLENGE_SECONDS + 0.5)  # expired, though Redis still holds the key
    late = raw_post(client, body)
    assert (late.status_code, error_code(late)) == (403, "push_challenge_unknown")
    assert "expired" in late.json()["error"]["message"]
    client.close()


def test_nonce_issued_to_another_agent_is_refused(push: Push, nodes: Callable[[str], Node]) -> None:
    a, b = nodes("push"), nodes("push")
    client_a, client_b = push_client(push, a), push_client(push, b)
    challenge_b = client_b.challenge()
    evidence = a.services[0].collect(challenge_b.request)
    body = PushEvidencePost(
        agent_id=a.agent_id, nonce=challenge_b.request.nonce, evidence=evidence
    ).model_dump_json(exclude_defaults=True)
    refused = raw_post(client_a, body)
    assert (refused.status_code, error_code(refused)) == (403, "push_challenge_unknown")
    # Nor may A speak for B with its own certificate.
    posing = push_client(push, a, agent_id=b.agent_id)
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


def test_challenges_are_rate_limited_per_agent(push: Push) -> None:
    client = redis.Redis.from_url(push.stack.verifier.settings.redis_url)
    challenges = PushChallenges(client, lifetime=5.0, per_minute=3, clock=lambda: 6_000_000.0)

    def asks(nonce: bytes) -> EvidenceRequest:
        return EvidenceRequest(nonce=nonce.hex(), pcrs={PcrBank.SHA256: [10]})

    for _ in range(3):
        challenges.issue("rate-limited-agent", asks)
    with pytest.raises(PushChallengeRateLimited):
        challenges.issue("rate-limited-agent", asks)
    challenges.issue("another-agent", asks)  # the limit is each agent's own
    keys = client.keys("geoattest:push-challenge:rate-limited-agent*")
    assert len(keys) == 1  # one outstanding challenge per agent, however many were asked for
    client.close()


def test_an_agent_that_registered_a_ca_certificate_is_not_taken(
    push: Push, make_swtpm: MakeSwtpm, tmp_path: Path
) -> None:
    agent_id = "registered-a-ca"
    ca = create_client_ca("anything this CA signs would be the agent").certificate_der
    with enrolled_with(push, make_swtpm(), tmp_path / "ca-node", agent_id, ca):
        for mode in ("push", "pull"):  # either way it would become a trust anchor
            answer = add_agent(push, agent_id, mode)
            assert (answer.status_code, error_code(answer)) == (409, "agent_certificate_invalid")


def test_a_post_without_a_challenge_is_refused_before_its_body_is_read(
    push: Push, nodes: Callable[[str], Node]
) -> None:
    node = nodes("push")
    with tls_to_listener(push, node) as tls:
        tls.sendall(
            b"POST /v1/push/evidence HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 16000000\r\n\r\n{"  # announces 16 MB, sends one byte
        )
        answer = b""
        while b"push_challenge_unknown" not in answer:  # a recv timeout (5 s) fails the test
            chunk = tls.recv(4096)  # answered now: the listener never waits for that body
            assert chunk, answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 403"), answer[:80]


def test_a_post_with_a_wrong_nonce_uses_up_the_challenge(
    push: Push, nodes: Callable[[str], Node]
) -> None:
    node = nodes("push")
    client = push_client(push, node)
    challenge = client.challenge()
    body = post_body(client, node, challenge)
    wrong = body.replace(challenge.request.nonce, "ab" * 32)
    refused = raw_post(client, wrong)
    assert (refused.status_code, error_code(refused)) == (403, "push_challenge_unknown")
    # Every body read costs a (rate-limited) challenge, so the right nonce now comes too late.
    late = raw_post(client, body)
    assert (late.status_code, error_code(late)) == (403, "push_challenge_unknown")
    assert push.stack.verifier.status(node.agent_id)["records"] == 0
    client.close()


def test_a_push_agent_with_another_push_agents_certificate_is_not_taken(
    push: Push, nodes: Callable[[str], Node], make_swtpm: MakeSwtpm, tmp_path: Path
) -> None:
    """The listener knows a push agent by its certificate alone: sharing one (a key copied
    between nodes) would leave one of them unable to post, or speaking as the other."""
    first = nodes("push")
    agent_id = "copied-a-push-key"
    pem = (first.state_dir / "server.pem").read_bytes()
    copied = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    with enrolled_with(push, make_swtpm(), tmp_path / "copy-node", agent_id, copied):
        answer = add_agent(push, agent_id, "push")
        assert (answer.status_code, error_code(answer)) == (409, "agent_certificate_invalid")
        assert first.agent_id in answer.json()["error"]["message"]
        pulled = add_agent(
            push, agent_id, "pull"
        )  # a pull agent's certificate is only its server's
        assert pulled.status_code == 201, pulled.text
        assert push_client(push, first).round().outcome == "passed"  # the first one still posts


def test_a_failed_push_agent_gets_no_challenge(push: Push, nodes: Callable[[str], Node]) -> None:
    node = nodes("push")
    client = push_client(push, node)
    node.ima.measure("/tmp/.hidden/miner", b"not in any policy")
    assert client.round().state == "failed"
    with pytest.raises(PushRefused) as refused:
        client.challenge()  # no round would run: nothing to hand out a nonce for
    assert refused.value.peer_code == "push_round_not_run"
    client.close()
