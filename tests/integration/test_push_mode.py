"""Push mode (ADR 19) end to end: real swtpm agents ask the verifier's push listener (real mTLS
over loopback) for challenges and post their evidence; the real verifier (API, Celery worker and
beat, redis-server, SQLite) judges and records it like a pull round.

The push nodes keep their pull API serving on purpose: the scheduler must not poll them, which
their record counts (one per post, none more) show.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from agent.enrolment import ApiEndpoint
from agent.push import PushClient
from geoattest.dev.procs import GEOATTEST, free_port, managed_process, port_accepts
from geoattest.dev.swtpm import SwtpmCa, SwtpmInstance
from geoattest.errors import PushChallengeRateLimited, PushRefused
from geoattest.pcr_banks import PcrBank
from geoattest.tls_material import (
    create_client_ca,
    self_signed_server_certificate,
    write_certified_key,
)
from geoattest.wire import EvidenceRequest
from geoattest.wire_push import PushChallengeView, PushEvidencePost
from tests.support import MakeSwtpm
from tests.support.swtpm_agent import Node, sha256_of, start_node, swtpm_node_policy
from tests.support.verifier_stack import ServiceStack, service_stack, settings_environment
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


def test_a_failed_push_agent_gets_no_challenge(push: Push, nodes: Callable[[str], Node]) -> None:
    node = nodes("push")
    client = _client(push, node)
    node.ima.measure("/tmp/.hidden/miner", b"not in any policy")
    assert client.round().state == "failed"
    with pytest.raises(PushRefused) as refused:
        client.challenge()  # no round would run: nothing to hand out a nonce for
    assert refused.value.peer_code == "push_round_not_run"
    client.close()


def test_an_agent_that_registered_a_ca_certificate_is_not_taken(
    push: Push, make_swtpm: MakeSwtpm, tmp_path: Path
) -> None:
    agent_id = "registered-a-ca"
    ca = create_client_ca("anything this CA signs would be the agent").certificate_der
    with _enrolled_with(push, make_swtpm(), tmp_path / "ca-node", agent_id, ca):
        for mode in ("push", "pull"):  # either way it would become a trust anchor
            answer = _add(push, agent_id, mode)
            assert (answer.status_code, _code(answer)) == (409, "agent_certificate_invalid")


@contextmanager
def _enrolled_with(
    push: Push, swtpm: SwtpmInstance, workdir: Path, agent_id: str, certificate: bytes
) -> Iterator[Node]:
    """A node enrolled (again) with ``certificate`` as its TLS certificate, forgotten after."""
    node = start_node(
        swtpm,
        workdir,
        agent_id,
        client_ca=push.stack.verifier.client_ca,
        registrar=push.stack.registrar,
    )
    registrar = push.stack.registrar.client()
    try:
        url = f"https://127.0.0.1:{node.port}"
        node.enrol(registrar, ApiEndpoint(url=url, tls_certificate=certificate))
        yield node
    finally:
        node.stop_api()
        push.stack.verifier.forget(registrar, [agent_id])
        registrar.close()


def _add(push: Push, agent_id: str, mode: str) -> requests.Response:
    return push.stack.verifier.request(
        "POST", f"/v1/agents/{agent_id}", json={"policy": "swtpm-edge", "mode": mode}
    )


def _tls_to_listener(push: Push, node: Node) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=push.stack.verifier.client_ca)
    context.load_cert_chain(node.state_dir / "server.pem", node.state_dir / "server-key.pem")
    port = int(push.url.rsplit(":", 1)[1])
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def test_a_post_without_a_challenge_is_refused_before_its_body_is_read(
    push: Push, nodes: Callable[[str], Node]
) -> None:
    node = nodes("push")
    with _tls_to_listener(push, node) as tls:
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
    client = _client(push, node)
    challenge = client.challenge()
    body = _post_body(client, node, challenge)
    wrong = body.replace(challenge.request.nonce, "ab" * 32)
    refused = _raw_post(client, wrong)
    assert (refused.status_code, _code(refused)) == (403, "push_challenge_unknown")
    # Every body read costs a (rate-limited) challenge, so the right nonce now comes too late.
    late = _raw_post(client, body)
    assert (late.status_code, _code(late)) == (403, "push_challenge_unknown")
    assert push.stack.verifier.status(node.agent_id)["records"] == 0
    client.close()


def test_a_challenge_whose_round_moved_on_is_stale_not_a_failure(
    push: Push, nodes: Callable[[str], Node]
) -> None:
    """An agent whose post is slow asks again; the second challenge is issued while the first
    round still runs, from the IMA offset before it. Judged after that round committed, it
    would look like a rewound IMA log and fail an honest agent."""
    node = nodes("push")
    client = _client(push, node)
    assert client.round().state == "attested"
    node.ima.measure("/usr/bin/bash", b"bash")  # an allowed entry: the first post moves the offset
    first = _post_body(client, node, client.challenge())
    hot = redis.Redis.from_url(push.stack.verifier.settings.redis_url)
    hot.set(f"geoattest:lock:{node.agent_id}", "held-by-a-slow-round", px=10_000)
    answers: list[requests.Response] = []
    posting = threading.Thread(target=lambda: answers.append(_raw_post(client, first)))
    posting.start()  # it waits for the lock
    time.sleep(0.5)
    second = client.challenge()  # issued while the first round has not committed
    hot.delete(f"geoattest:lock:{node.agent_id}")
    posting.join(timeout=15)
    assert answers[0].status_code == 200
    assert answers[0].json()["outcome"] == "passed"
    stale = _raw_post(client, _post_body(client, node, second))
    assert (stale.status_code, _code(stale)) == (409, "push_challenge_stale")
    assert push.stack.verifier.status(node.agent_id)["state"] == "attested"
    assert client.round().outcome == "passed"  # a new challenge asks from the new offset
    hot.close()
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
    with _enrolled_with(push, make_swtpm(), tmp_path / "copy-node", agent_id, copied):
        answer = _add(push, agent_id, "push")
        assert (answer.status_code, _code(answer)) == (409, "agent_certificate_invalid")
        assert first.agent_id in answer.json()["error"]["message"]
        pulled = _add(push, agent_id, "pull")  # a pull agent's certificate is only its server's
        assert pulled.status_code == 201, pulled.text
        assert _client(push, first).round().outcome == "passed"  # the first one still posts


def _children(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines())
        except (OSError, ValueError):
            continue  # exited meanwhile
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


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
        while len(_children(listener.pid)) < 2:
            assert time.monotonic() < deadline, _children(listener.pid)
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
