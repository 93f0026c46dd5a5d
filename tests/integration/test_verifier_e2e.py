"""Continuous attestation end to end: simulated agents (software TPMs, genuine-format evidence) over
mTLS, a real registrar, verifier API, Celery worker + beat, redis-server and SQLite.

Each test owns one simulated agent of a shared fleet, tampers with it like an attacker would, and
waits for the verifier to notice within a few rounds (rounds every 0.5 s here).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.agent_simulator import AgentSimulator, Malformed, policy_document
from tests.support.simulated_fleet import SimulatedFleet, simulated_fleet
from tests.support.verifier_stack import RunningVerifier
from verifier.notify.webhooks import sign_payload

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ALLOWED_FILES = {"/usr/bin/bash": b"bash", "/usr/sbin/sshd": b"sshd"}
WEBHOOK_SECRET = "webhook-test-secret-of-32-characters"  # noqa: S105  # a test value


@dataclass
class Webhooks:
    """A real HTTP receiver recording every webhook request."""

    received: list[tuple[dict[str, str], bytes]]
    url: str


@pytest.fixture(scope="module")
def webhooks() -> Iterator[Webhooks]:
    received: list[tuple[dict[str, str], bytes]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((dict(self.headers), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Webhooks(received=received, url=f"http://127.0.0.1:{server.server_port}/hook")
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@dataclass
class Stack:
    fleet: SimulatedFleet
    webhooks: Webhooks

    @property
    def verifier(self) -> RunningVerifier:
        return self.fleet.verifier

    @property
    def redis_url(self) -> str:
        return self.fleet.redis_url


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, webhooks: Webhooks) -> Iterator[Stack]:
    with simulated_fleet(
        tmp_path_factory.mktemp("e2e"),
        allowed=ALLOWED_FILES,
        webhook_urls=(webhooks.url,),
        webhook_secret=WEBHOOK_SECRET,
    ) as fleet:
        yield Stack(fleet=fleet, webhooks=webhooks)


def _attested_agent(stack: Stack) -> AgentSimulator:
    return stack.fleet.attested_agent()


def _serve_rounds(stack: Stack, sim: AgentSimulator, count: int) -> list[dict[str, object]]:
    return stack.fleet.serve_rounds(sim, count)


def _failure_event(stack: Stack, agent_id: str) -> dict[str, object]:
    status = stack.verifier.wait_for_state(agent_id, "failed", timeout=15)
    events = stack.verifier.events(agent_id)
    assert events[0]["to_state"] == "failed"
    assert events[0]["reason"] == status["reason"]
    return events[0]


def test_healthy_agent_stays_attested_over_rounds(stack: Stack) -> None:
    sim = _attested_agent(stack)
    sim.measure("/usr/bin/bash", content=b"bash")
    sim.measure("/var/log/syslog", content=b"excluded by the policy")
    for status in _serve_rounds(stack, sim, 6):
        assert status["state"] == "attested", status
    status = stack.verifier.status(sim.agent_id)
    assert status["ima_entries_verified"] == len(sim.ima.lines)
    events = stack.verifier.events(sim.agent_id)
    assert [(e["from_state"], e["to_state"]) for e in events] == [("registered", "attested")]
    assert float(str(status["lease_remaining_seconds"])) > 0
    assert int(str(status["records"])) >= 6  # every round left an evidence record


def test_executing_a_file_not_in_the_policy_fails_with_the_offending_entry(stack: Stack) -> None:
    sim = _attested_agent(stack)
    sim.measure("/tmp/cryptominer", content=b"evil")
    event = _failure_event(stack, sim.agent_id)
    assert event["reason"] == "ima_entry_not_allowed"
    assert "/tmp/cryptominer" in str(event["message"])
    assert hashlib.sha256(b"evil").hexdigest() in str(event["message"])


def test_pcr10_extended_without_a_log_entry_fails(stack: Stack) -> None:
    sim = _attested_agent(stack)
    sim.extend_without_log()
    event = _failure_event(stack, sim.agent_id)
    assert event["reason"] == "ima_pcr_mismatch"


def test_replayed_old_quote_fails(stack: Stack) -> None:
    sim = _attested_agent(stack)
    assert sim.last_response is not None
    sim.replay_next = sim.last_response
    event = _failure_event(stack, sim.agent_id)
    assert event["reason"] == "nonce_mismatch"


def test_quote_signed_by_another_tpms_key_fails(stack: Stack) -> None:
    sim = _attested_agent(stack)
    sim.sign_with = ec.generate_private_key(ec.SECP256R1())
    event = _failure_event(stack, sim.agent_id)
    assert event["reason"] == "quote_signature_invalid"


def test_rewritten_log_line_fails(stack: Stack) -> None:
    sim = _attested_agent(stack)
    sim.measure("/tmp/evil", content=b"evil")  # not yet seen: the agent fails at once …
    sim.rewrite_line(len(sim.ima.lines) - 1, path="/usr/bin/bash")  # … unless hidden: it cannot be
    event = _failure_event(stack, sim.agent_id)
    assert event["reason"] == "ima_pcr_mismatch"


def test_truncated_log_fails(stack: Stack) -> None:
    sim = _attested_agent(stack)
    sim.measure("/usr/bin/bash", content=b"bash")
    stack.verifier.wait_for_state(sim.agent_id, "attested")
    _serve_rounds(stack, sim, 2)  # let the verifier take the new entry in
    sim.truncate_log(1)
    sim.measure("/usr/sbin/sshd", content=b"sshd")
    event = _failure_event(stack, sim.agent_id)
    assert event["reason"] == "ima_pcr_mismatch"


def test_reboot_is_handled_without_a_false_failure(stack: Stack) -> None:
    sim = _attested_agent(stack)
    sim.measure("/usr/bin/bash", content=b"bash")
    _serve_rounds(stack, sim, 2)
    sim.reboot()
    sim.measure("/usr/sbin/sshd", content=b"sshd")
    for seen in _serve_rounds(stack, sim, 4):  # attesting while the new boot is checked
        assert seen["state"] in {"attested", "attesting"}, seen
    status = stack.verifier.wait_for_state(sim.agent_id, "attested")
    assert status["ima_entries_verified"] == len(sim.ima.lines)
    assert all(event["to_state"] != "failed" for event in stack.verifier.events(sim.agent_id))


# An answer that is not evidence at all is a protocol fault (another version, or not an agent):
# unreachable, never revoked. Evidence that parses but is wrong is an integrity failure.
NOT_EVIDENCE = {
    Malformed.BAD_JSON,
    Malformed.NOT_AN_OBJECT,
    Malformed.MISSING_FIELD,
    Malformed.BAD_BASE64,
    Malformed.BAD_PCR_VALUE,
    Malformed.EMPTY,
}
INTEGRITY_CODES = {"tpm_structure_invalid", "quote_signature_invalid", "ima_log_invalid"}


@pytest.mark.parametrize("how", sorted(set(Malformed) - NOT_EVIDENCE))
def test_wrong_evidence_is_an_integrity_failure_not_a_crash(stack: Stack, how: Malformed) -> None:
    sim = _attested_agent(stack)
    sim.malformed = how
    event = _failure_event(stack, sim.agent_id)
    assert event["reason"] in INTEGRITY_CODES


@pytest.mark.parametrize("how", sorted(NOT_EVIDENCE))
def test_an_answer_that_is_not_evidence_is_a_protocol_fault(stack: Stack, how: Malformed) -> None:
    sim = _attested_agent(stack)
    sim.malformed = how
    status = stack.verifier.wait_for_state(sim.agent_id, "unreachable", timeout=15)
    assert status["reason"] == "agent_protocol_mismatch"
    assert all(e["to_state"] != "failed" for e in stack.verifier.events(sim.agent_id))
    sim.malformed = None
    stack.verifier.wait_for_state(sim.agent_id, "attested")


def test_failure_publishes_revocation_and_calls_the_signed_webhook(stack: Stack) -> None:
    subscriber = redis.Redis.from_url(stack.redis_url).pubsub()  # type: ignore[no-untyped-call, unused-ignore]  # redis-py < 8 leaves pubsub() untyped
    subscriber.subscribe("geoattest:revocations")
    sim = _attested_agent(stack)
    sim.measure("/tmp/dropper", content=b"x")
    event = _failure_event(stack, sim.agent_id)
    revocation = None
    for _ in range(100):
        message = subscriber.get_message(timeout=0.1)
        if message and message["type"] == "message":
            body = json.loads(message["data"])
            if body["agent_id"] == sim.agent_id:
                revocation = body
                break
    subscriber.close()
    assert revocation is not None
    assert revocation["reason"] == "ima_entry_not_allowed"
    assert revocation["id"] == event["id"]
    assert revocation == event  # one event model: the channel, the webhook and the API agree
    hook = _wait_for_webhook(stack, sim.agent_id)
    headers, body = hook
    expected = sign_payload(WEBHOOK_SECRET.encode(), headers["X-Geoattest-Timestamp"], body)
    assert headers["X-Geoattest-Signature"] == expected
    assert json.loads(body) == event


def _wait_for_webhook(stack: Stack, agent_id: str) -> tuple[dict[str, str], bytes]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for headers, body in stack.webhooks.received:
            if json.loads(body)["agent_id"] == agent_id:
                return headers, body
        time.sleep(0.1)
    pytest.fail(f"no webhook for {agent_id}: {stack.webhooks.received}")


def test_failed_agent_stays_failed_until_readmitted(stack: Stack) -> None:
    sim = _attested_agent(stack)
    sim.measure("/tmp/evil", content=b"evil")
    _failure_event(stack, sim.agent_id)
    assert stack.verifier.act(sim.agent_id, "resume").status_code == 409
    # The operator cleans the node (a fresh boot) and re-admits it.
    sim.reboot()
    assert stack.verifier.act(sim.agent_id, "readmit").status_code == 200
    stack.verifier.wait_for_state(sim.agent_id, "attested")


def test_paused_agent_is_not_polled(stack: Stack) -> None:
    sim = _attested_agent(stack)
    assert stack.verifier.act(sim.agent_id, "pause").status_code == 200
    stack.verifier.wait_for_state(sim.agent_id, "paused")
    time.sleep(1.0)
    served = sim.served
    time.sleep(1.5)
    assert sim.served == served
    assert stack.verifier.act(sim.agent_id, "resume").status_code == 200
    stack.verifier.wait_for_state(sim.agent_id, "attested")


def test_changing_the_policy_takes_effect_at_the_next_round(stack: Stack) -> None:
    sim = _attested_agent(stack)
    document = policy_document(sim, ALLOWED_FILES)
    runtime = document["runtime_policy"]
    assert isinstance(runtime, dict)
    runtime["digests"]["/opt/new-release"] = ["sha256:" + hashlib.sha256(b"v2").hexdigest()]
    response = stack.verifier.put_policy("edge-v2", document)
    assert response.status_code == 200
    moved = stack.verifier.request(
        "PUT", f"/v1/agents/{sim.agent_id}/policy", json={"policy": "edge-v2"}
    )
    assert moved.status_code == 200, moved.text
    _serve_rounds(stack, sim, 2)
    sim.measure("/opt/new-release", content=b"v2")
    for status in _serve_rounds(stack, sim, 3):
        assert status["state"] == "attested", status


def test_bad_operator_input_gets_clear_4xx(stack: Stack, tmp_path: Path) -> None:
    verifier = stack.verifier
    bad_policy = verifier.put_policy("broken", {"boot_pcrs": {"sha256": {"0": "zz"}}})
    assert bad_policy.status_code == 400
    bad_runtime = verifier.put_policy("broken", {"runtime_policy": {"version": 99}})
    assert bad_runtime.status_code == 400
    assert bad_runtime.json()["error"]["code"] == "policy_invalid"
    unknown_agent = verifier.add_agent("not-enrolled", "edge")
    assert unknown_agent.status_code == 404
    unknown_policy = verifier.add_agent(next(iter(stack.fleet.sims)), "no-such-policy")
    assert unknown_policy.status_code == 404
