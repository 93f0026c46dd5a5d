"""The push listener's own defences (ADR 19), on real TLS over loopback and no other service:
which registered certificates its trust store takes, how many connections it gives a thread,
and how long one request may take.

The listener serves a small Flask app here (its round engine is tested in push/test_push_mode.py);
the fleet is a ``FleetConfig`` built in the test.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask, request

from geoattest.tls_material import (
    create_client_ca,
    ensure_push_server_tls,
    issue_client_certificate,
    self_signed_server_certificate,
    write_certified_key,
)
from verifier.core.states import AgentMode, AgentState
from verifier.engine.fleet import FleetConfig
from verifier.engine.push_server import PushServer, PushTrust, make_push_server
from verifier.storage.sql import AgentTarget

AGENT = self_signed_server_certificate("push-agent", ["127.0.0.1"])


def _target(agent_id: str, certificate: bytes) -> AgentTarget:
    return AgentTarget(
        agent_id=agent_id,
        policy_name="p",
        ak_public=b"",
        agent_url="https://127.0.0.1:1",
        tls_certificate=certificate,
        state=AgentState.ATTESTED,
        mode=AgentMode.PUSH,
    )


def _fleet(*certificates: bytes) -> FleetConfig:
    return FleetConfig(
        version=1, targets={f"a{i}": _target(f"a{i}", c) for i, c in enumerate(certificates)}
    )


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("push-tls")
    ensure_push_server_tls(directory, ["127.0.0.1"])
    write_certified_key(AGENT, directory / "agent.pem", directory / "agent-key.pem")
    return directory


def _trust(tls_dir: Path, fleet: FleetConfig) -> PushTrust:
    return PushTrust(tls_dir / "push.pem", tls_dir / "push-key.pem", lambda: fleet)


def test_trust_store_holds_only_pinnable_registered_certificates(tls_dir: Path) -> None:
    ca = create_client_ca("an agent that registered a CA").certificate_der
    foreign_issued = issue_client_certificate(create_client_ca()).certificate_der
    fleet = _fleet(b"not a certificate", ca, foreign_issued, AGENT.certificate_der)
    stats = _trust(tls_dir, fleet).context().cert_store_stats()
    # One bad record locks out its own agent only; a CA would vouch for all it signs.
    assert (stats["x509"], stats["x509_ca"]) == (1, 0)


class Listener:
    def __init__(self, server: PushServer, tls_dir: Path) -> None:
        self.server = server
        self.port = server.server_port
        self.tls_dir = tls_dir

    def connect(self) -> ssl.SSLSocket:
        """An mTLS connection with the registered agent certificate."""
        context = ssl.create_default_context(cafile=self.tls_dir / "client-ca.pem")
        context.load_cert_chain(self.tls_dir / "agent.pem", self.tls_dir / "agent-key.pem")
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        return context.wrap_socket(raw, server_hostname="127.0.0.1")


@pytest.fixture
def listener(tls_dir: Path) -> Iterator[Listener]:
    app = Flask("push-listener-test")

    @app.post("/echo")
    def echo() -> str:
        return str(len(request.get_data()))

    @app.post("/refuse")
    def refuse() -> tuple[str, int]:
        return "refused before the body", 403  # as the push routes do for a stranger

    trust = _trust(tls_dir, _fleet(AGENT.certificate_der))
    server = make_push_server(
        app, trust, "127.0.0.1", 0, max_connections=2, request_deadline=1.5, idle_timeout=1.0
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Listener(server, tls_dir)
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _echo(tls: ssl.SSLSocket, body: bytes) -> bytes:
    """One request on ``tls``; the answer's body (read by its length: the connection stays)."""
    head = f"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    tls.sendall(head.encode() + body)
    answer = http.client.HTTPResponse(tls)  # type: ignore[arg-type,unused-ignore]  # it calls makefile
    answer.begin()
    assert not answer.will_close, answer.getheaders()
    return answer.read()


def test_a_registered_agent_is_served_on_one_kept_alive_connection(listener: Listener) -> None:
    with listener.connect() as tls:
        assert tls.version() == "TLSv1.3"
        # Challenge and post of a round, and the next round, on one handshake.
        assert [_echo(tls, b"x" * n) for n in (5, 1200, 0)] == [b"5", b"1200", b"0"]


def test_an_answer_given_before_the_body_was_read_closes_the_connection(
    listener: Listener,
) -> None:
    """The rest of an unread body must never be taken for the next request."""
    with listener.connect() as tls:
        tls.sendall(
            b"POST /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
            + b"GET /echo HTTP/1.1\r\n\r\n"
            + b"-" * 75  # smuggled into the unread body
        )
        answer = http.client.HTTPResponse(tls)  # type: ignore[arg-type,unused-ignore]
        answer.begin()
        assert (answer.status, answer.will_close) == (403, True)
        answer.read()
        assert tls.recv(4096) == b""  # no second answer: the connection closed


def test_connections_beyond_the_cap_are_closed_at_once(listener: Listener) -> None:
    # Two peers that never start a handshake hold both threads (for the handshake timeout).
    idle = [socket.create_connection(("127.0.0.1", listener.port), timeout=5) for _ in range(2)]
    time.sleep(0.3)
    third = socket.create_connection(("127.0.0.1", listener.port), timeout=3)
    started = time.monotonic()
    assert third.recv(1) == b""  # closed by the listener, not left waiting for a thread
    assert time.monotonic() - started < 2.0
    third.close()
    for sock in idle:
        sock.close()
    time.sleep(0.3)  # their threads end: the listener serves again
    with listener.connect() as tls:
        assert _echo(tls, b"x") == b"1"


def test_a_request_that_trickles_is_cut_off_at_its_deadline(listener: Listener) -> None:
    with listener.connect() as tls:
        tls.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < 6.0:  # one byte per 0.2 s: every recv is fresh
            try:
                tls.sendall(b"a")
            except OSError:
                closed = True
                break
            time.sleep(0.2)
        assert closed, "the listener kept reading a request past its deadline"
        assert time.monotonic() - started < 1.5 + 2.0


def _trickle(tls: ssl.SSLSocket, data: bytes, every: float, within: float) -> float | None:
    """Send ``data`` a byte every ``every`` s; when the listener cut the connection, after how
    many seconds (None: all of it went out within ``within`` s)."""
    started = time.monotonic()
    for byte in data:
        try:
            tls.sendall(bytes([byte]))
        except OSError:
            return time.monotonic() - started
        if time.monotonic() - started > within:
            break
        time.sleep(every)
    return None


def test_a_request_line_that_trickles_is_cut_off(listener: Listener) -> None:
    with listener.connect() as tls:
        cut = _trickle(tls, b"POST /echo HTTP/1.1\r\n" * 4, every=0.2, within=8.0)
    assert cut is not None, "the listener kept reading a request line past idle + deadline"
    assert cut < 1.0 + 1.5 + 2.0


def test_a_slow_body_gets_the_time_its_length_takes(listener: Listener) -> None:
    body = b"x" * (200 * 1024)  # 3.1 s at 64 KiB/s: the 1.5 s deadline alone would cut it
    with listener.connect() as tls:
        tls.sendall(
            f"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        )
        for start in range(0, len(body), len(body) // 10):
            tls.sendall(body[start : start + len(body) // 10])
            time.sleep(0.25)  # 2.5 s in all
        answer = http.client.HTTPResponse(tls)  # type: ignore[arg-type,unused-ignore]
        answer.begin()
        assert answer.read() == str(len(body)).encode()


def test_a_body_framed_by_two_lengths_closes_the_connection(listener: Listener) -> None:
    """werkzeug reads the last Content-Length: a peer must not frame a second request with
    the first one."""
    smuggled = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    with listener.connect() as tls:
        tls.sendall(
            b"POST /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
            + f"Content-Length: {len(smuggled)}\r\n\r\n".encode()
            + smuggled
        )
        answer = http.client.HTTPResponse(tls)  # type: ignore[arg-type,unused-ignore]
        answer.begin()
        assert (answer.status, answer.will_close) == (403, True)
        answer.read()
        assert tls.recv(4096) == b""  # the smuggled request was never answered


def test_a_request_line_that_does_not_parse_is_answered(listener: Listener) -> None:
    with listener.connect() as tls:
        tls.sendall(b"POST /echo HTTP/1.1 and more\r\n\r\n")
        answer = b""
        while chunk := tls.recv(4096):  # http.server answers a line it cannot parse, and closes
            answer += chunk
    assert b"Error code: 400" in answer, answer
