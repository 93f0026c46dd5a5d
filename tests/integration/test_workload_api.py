"""The agent's workload API over a real Unix socket, called by real processes (distinct copies of
the interpreter), with the verifier's token service behind it: each program gets a token naming
its own executable, whatever it claims; a program that exits or executes another one between
its request and the answer gets nothing; cached tokens are dropped when the verifier revokes."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from agent.workload.api import WorkloadApi
from agent.workload.peer import ExecutableHasher
from agent.workload.server import WorkloadServer, make_workload_server
from agent.workload.tokens import WorkloadTokens
from agent.workload.verifier_client import TokenRequest, VerifierTokenClient
from geoattest.wire import PolicyDocument
from geoattest.wire_tokens import WORKLOAD_HEADER, CnfWire, make_cnf
from tests.support.agent_simulator import policy_document
from tests.support.programs import Program, program
from tests.support.runner_stack import ALLOWED, POLICY
from tests.support.token_stack import SimQuoter, TokenStack, token_stack
from verifier.core.policy import canonical_document, document_digest
from verifier.tokens.verify import Expected, VerifiedToken, verify_token
from verifier.tokens.vocabulary import EarStatus, WorkloadMeasure

pytestmark = [pytest.mark.redis]

FETCH_SCRIPT = """
import sys
from pathlib import Path
from geoattest.wire_tokens import WorkloadTokenRequest
from geoattest.workload_client import request_token
view = request_token(Path(sys.argv[1]), WorkloadTokenRequest(type="por", audience="svc"))
print(view.model_dump_json())
"""

RAW_REQUEST = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
body = sys.argv[2].encode()
s.sendall(b"POST /v1/token HTTP/1.1\\r\\nHost: x\\r\\nGeoattest-Workload: true\\r\\n"
          b"Content-Type: application/json\\r\\nConnection: close\\r\\n"
          b"Content-Length: %d\\r\\n\\r\\n" % len(body) + body)
data = b""
while chunk := s.recv(65536):
    data += chunk
print(data.decode())
"""

REQUEST_THEN = """
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
time.sleep(0.5)  # the agent identifies its callers when it accepts them
body = b'{"type": "por", "audience": "svc"}'
s.sendall(b"POST /v1/token HTTP/1.1\\r\\nHost: x\\r\\nGeoattest-Workload: true\\r\\n"
          b"Content-Type: application/json\\r\\nConnection: close\\r\\n"
          b"Content-Length: %d\\r\\n\\r\\n" % len(body) + body)
if sys.argv[2] == "exit":
    time.sleep(1.0)  # alive while the agent takes the request, gone before its answer
    os._exit(0)
os.set_inheritable(s.fileno(), True)
reader = ("import os, sys\\ndata = b''\\n"
          "while chunk := os.read(int(sys.argv[1]), 65536):\\n    data += chunk\\n"
          "print(data.decode())")
os.execv(sys.argv[2], [sys.argv[2], "-c", reader, str(s.fileno())])
"""


class GatedClient(VerifierTokenClient):
    """The real client, held at a gate the test opens (to order a race deterministically), and
    counting what it asked the verifier."""

    gate: threading.Event | None = None
    asked = 0

    def request(self, order: TokenRequest) -> object:  # type: ignore[override]  # same result
        self.asked += 1
        if self.gate is not None:
            assert self.gate.wait(20), "the test never opened the gate"
        return super().request(order)


@dataclass
class Workload:
    stack: TokenStack
    agent_id: str
    socket: Path
    client: GatedClient
    tokens: WorkloadTokens
    server: WorkloadServer
    a: Program
    b: Program

    def run(self, prog: Program, script: str, *args: str) -> str:
        done = subprocess.run(
            prog.argv(script, str(self.socket), *args),
            env=prog.env(),
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        return done.stdout.decode()

    def cached(self) -> int:
        return self.tokens.cached_count()

    def verified(self, token: str, **expect: object) -> VerifiedToken:
        expected = Expected(audience="svc", **expect)  # type: ignore[arg-type]
        verdict = verify_token(token, self.stack.keys(), expected, dt.datetime.now(dt.UTC))
        assert isinstance(verdict, VerifiedToken), verdict
        return verdict


def _allow(stack: TokenStack, agent_id: str, programs: dict[str, Program]) -> None:
    """The fleet's policy also allows these programs at these paths, and the node ran them."""
    sim = stack.runner.sims[agent_id]
    allowed = {**ALLOWED, **{path: prog.path.read_bytes() for path, prog in programs.items()}}
    document = PolicyDocument.model_validate(policy_document(sim, allowed))
    canonical = canonical_document(document)
    stack.runner.store.put_policy(
        POLICY, canonical, document_digest(canonical), dt.datetime.now(dt.UTC)
    )
    stack.runner.hot.bump_config_version()
    for path, prog in programs.items():
        sim.measure(path, digest=prog.sha256)


@pytest.fixture
def workload(tmp_path: Path, redis_url: str) -> Iterator[Workload]:
    a, b = program(tmp_path / "bin", "prog-a"), program(tmp_path / "bin", "prog-b")
    with token_stack(tmp_path, redis_url, agents=1) as stack:
        agent_id = sorted(stack.runner.sims)[0]
        _allow(stack, agent_id, {"/opt/prog-a": a, "/opt/prog-b": b})
        stack.attest(agent_id)
        client = GatedClient(stack.url, agent_id, SimQuoter(stack.runner.sims[agent_id]))
        tokens = WorkloadTokens(client, poll_seconds=0.1)
        hasher = ExecutableHasher(max_bytes=64 * 1024 * 1024)
        path = tmp_path / "agent" / "workload.sock"
        server = make_workload_server(WorkloadApi(tokens, hasher), path, mode=0o600)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        tokens.start()
        try:
            yield Workload(stack, agent_id, path, client, tokens, server, a, b)
        finally:
            tokens.close()
            server.shutdown()
            server.remove()
            thread.join(timeout=5)
            client.close()


def test_each_program_gets_a_token_naming_its_own_executable(workload: Workload) -> None:
    first = json.loads(workload.run(workload.a, FETCH_SCRIPT))
    second = json.loads(workload.run(workload.b, FETCH_SCRIPT))
    assert first["workload_sha256"] == workload.a.sha256.hex()
    assert second["workload_sha256"] == workload.b.sha256.hex()
    a = workload.verified(first["token"], workloads=frozenset({workload.a.sha256}))
    b = workload.verified(second["token"], workloads=frozenset({workload.b.sha256}))
    assert a.workload_measured_by is b.workload_measured_by is WorkloadMeasure.IMA_ALLOWLISTED
    assert a.status is EarStatus.AFFIRMING
    assert a.claims["submods"]["workload"]["geoattest.workload"]["path"] == "/opt/prog-a"  # type: ignore[index]


def test_a_program_lying_in_the_body_still_gets_its_true_hash(workload: Workload) -> None:
    lie = json.dumps(
        {
            "type": "por",
            "audience": "svc",
            "workload": {"sha256": workload.b.sha256.hex()},
            "workload_sha256": workload.b.sha256.hex(),
            "pid": 1,
            "sha256": workload.b.sha256.hex(),
        }
    )
    answer = workload.run(workload.a, RAW_REQUEST, lie)
    assert answer.startswith("HTTP/1.1 200"), answer
    body = json.loads(answer.split("\r\n\r\n", 1)[1])
    assert body["workload_sha256"] == workload.a.sha256.hex()
    verdict = workload.verified(body["token"])
    assert verdict.workload_sha256 == workload.a.sha256


def test_the_second_call_is_served_from_the_cache(workload: Workload) -> None:
    first = json.loads(workload.run(workload.a, FETCH_SCRIPT))
    again = json.loads(workload.run(workload.a, FETCH_SCRIPT))
    assert first["cached"] is False
    assert again["cached"] is True
    assert again["token"] == first["token"]


def test_a_request_without_the_fixed_header_is_refused(workload: Workload) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(workload.socket))
        body = b'{"type": "por", "audience": "svc"}'
        sock.sendall(
            b"POST /v1/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert b"workload_header_missing" in answer
    assert WORKLOAD_HEADER.encode() in answer


def test_a_program_that_execs_before_the_answer_gets_nothing(workload: Workload) -> None:
    workload.client.gate = threading.Event()
    child = subprocess.Popen(
        workload.a.argv(REQUEST_THEN, str(workload.socket), str(workload.b.path)),
        env=workload.a.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the request is in; the caller now runs program B
        try:
            if os.readlink(f"/proc/{child.pid}/exe") == str(workload.b.path):
                break
        except OSError:
            pass
        time.sleep(0.01)
    else:
        pytest.fail("the child never executed program B")
    workload.client.gate.set()
    out, err = child.communicate(timeout=30)
    answer = out.decode()
    assert "workload_changed" in answer, (answer, err.decode()[-1000:])
    assert "eyJ" not in answer  # no JWS of any kind


def test_a_program_that_exits_before_the_answer_gets_nothing(
    workload: Workload, caplog: pytest.LogCaptureFixture
) -> None:
    workload.client.gate = threading.Event()
    child = subprocess.Popen(
        workload.a.argv(REQUEST_THEN, str(workload.socket), "exit"), env=workload.a.env()
    )
    assert child.wait(timeout=30) == 0
    time.sleep(0.1)  # the pid is gone; a new process may even take it
    with caplog.at_level(logging.WARNING, logger="agent.workload.api"):
        workload.client.gate.set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "workload_changed" not in caplog.text:
            time.sleep(0.02)
    refusals = [r for r in caplog.records if getattr(r, "code", None) == "workload_changed"]
    assert refusals, caplog.text
    assert "exited before its answer" in refusals[0].getMessage()  # its pidfd says so


def test_cached_tokens_are_dropped_when_the_verifier_revokes(workload: Workload) -> None:
    first = json.loads(workload.run(workload.a, FETCH_SCRIPT))
    assert first["cached"] is False
    sim = workload.stack.runner.sims[workload.agent_id]
    sim.measure("/tmp/miner", content=b"not allowed")  # the node's path
    workload.stack.attest(workload.agent_id)  # failed: the token is revoked
    deadline = time.monotonic() + 5  # the agent reads the status document every 0.1 s here
    while time.monotonic() < deadline and workload.cached():
        time.sleep(0.05)
    assert not workload.cached(), "the revoked token is still cached"
    done = subprocess.run(
        workload.a.argv(FETCH_SCRIPT, str(workload.socket)),
        env=workload.a.env(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert b"AgentNotAttested" in done.stderr


def test_an_unproven_cnf_key_is_refused_by_the_agent_itself(workload: Workload) -> None:
    """A proof made by another key: the agent refuses before it asks the verifier."""
    key, other = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    proven = make_cnf(other, audience="svc", kind="por", now=dt.datetime.now(dt.UTC))
    forged = CnfWire(
        jwk=make_cnf(key, audience="svc", kind="por", now=dt.datetime.now(dt.UTC)).jwk,
        proof=proven.proof,
    )
    body = json.dumps({"type": "por", "audience": "svc", "cnf": forged.model_dump(mode="json")})
    before = workload.client.asked
    answer = workload.run(workload.a, RAW_REQUEST, body)
    assert answer.startswith("HTTP/1.1 400"), answer
    assert "cnf_proof_invalid" in answer
    assert workload.client.asked == before
