"""Fetching evidence from agents: the ``EvidenceSource`` seam and its HTTPS client over mutual TLS.

The round runner asks an ``EvidenceSource`` for one answer; the HTTPS client below is the one
production uses, and tests plug in simulators behind the same protocol.

The verifier trusts an agent's API only through the server certificate registered at enrolment:
after the TLS handshake the peer certificate's SHA-256 must equal the pinned one (no CA, no
hostname games), and the verifier proves itself with its client certificate.

**Deadlines are wall-clock and total.** A socket timeout bounds each ``recv``, not a request: a
peer that sends one byte per second never trips it. Every request here is registered with a
``DeadlineReaper`` that shuts the socket down when the request's deadline passes, whatever phase
it is in (connect, handshake, headers, body), so a trickling agent becomes
``agent_deadline_exceeded`` within its deadline and pins a round thread no longer than that.

Keep-alive connections are pooled per endpoint (host, port, pinned certificate), up to
``connections_per_endpoint`` idle ones (as many as there are round threads: agents behind one
gateway share its endpoint). One ``SSLContext`` is built per client with the client certificate
loaded once (a context per connection cost ~10 ms of CPU, measured in docs/benchmarks.md).
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import http.client
import itertools
import json
import socket
import ssl
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from pydantic import ValidationError

from geoattest.errors import (
    AgentCertificateMismatch,
    AgentDeadlineExceeded,
    AgentProtocolMismatch,
    AgentUnreachable,
    AgentUrlInvalid,
    LocationMissing,
)
from geoattest.untrusted import error_code, printable
from geoattest.wire import EvidenceRequest, EvidenceResponse

MAX_EVIDENCE_BYTES = 16 * 1024 * 1024
DEFAULT_CONNECTIONS_PER_ENDPOINT = 2
MAX_ENDPOINTS = 4096  # idle pools kept per process (least recently used ones are closed)


class EvidenceSource(Protocol):
    """Where a round gets an agent's answer.

    Raises ``ReachabilityError`` subclasses when there is no usable answer (``AgentUnreachable``,
    ``AgentDeadlineExceeded``, ``AgentCertificateMismatch``, ``AgentProtocolMismatch``,
    ``AgentUrlInvalid``) and ``LocationMissing`` when location was asked for and the agent has no
    fix: under a geofencing policy that is no excuse to stay attested.
    """

    def fetch_evidence(
        self, agent_url: str, tls_certificate: bytes, request: EvidenceRequest
    ) -> EvidenceResponse: ...


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """The verifier's TLS client certificate and key (PEM files)."""

    cert_file: Path
    key_file: Path


class DeadlineReaper:
    """One thread that shuts down the sockets of requests whose deadline has passed."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._watched: dict[int, socket.socket] = {}
        self._expired: set[int] = set()
        self._ids = itertools.count()
        self._cond = threading.Condition()
        threading.Thread(target=self._loop, name="fetch-deadlines", daemon=True).start()

    def watch(self, sock: socket.socket, deadline: float) -> int:
        with self._cond:
            handle = next(self._ids)
            self._watched[handle] = sock
            heapq.heappush(self._heap, (deadline, handle))
            if self._heap[0][1] == handle:
                self._cond.notify()
            return handle

    def release(self, handle: int) -> bool:
        """Stop watching; returns whether the deadline had already fired."""
        with self._cond:
            self._watched.pop(handle, None)
            if handle in self._expired:
                self._expired.discard(handle)
                return True
            return False

    def _loop(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][1] not in self._watched:
                    heapq.heappop(self._heap)  # released before its deadline
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, handle = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                sock = self._watched.pop(handle)
                self._expired.add(handle)
                _shut_down(sock)


def _shut_down(sock: socket.socket) -> None:
    """Wake whatever blocks on ``sock``: shutting down a duplicate of its descriptor ends the
    connection without touching the SSL object another thread is using. Owners release their
    handle before they close a socket, so the descriptor here is still theirs."""
    try:
        duplicate = socket.fromfd(sock.fileno(), sock.family, sock.type)
    except (OSError, ValueError):
        return  # already closed
    try:
        duplicate.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # not connected any more
    finally:
        duplicate.close()


_Endpoint = tuple[str, int, bytes]


class AgentClient:
    """The production ``EvidenceSource``. Thread-safe: rounds for many agents run concurrently."""

    def __init__(
        self,
        identity: ClientIdentity,
        *,
        timeout: float,
        connections_per_endpoint: int = DEFAULT_CONNECTIONS_PER_ENDPOINT,
    ) -> None:
        self._context = _client_context(identity)
        self._timeout = timeout  # the total deadline of one fetch
        self._connections = connections_per_endpoint
        self._idle: OrderedDict[_Endpoint, deque[http.client.HTTPSConnection]] = OrderedDict()
        self._lock = threading.Lock()
        self._reaper = DeadlineReaper()

    def fetch_evidence(
        self, agent_url: str, tls_certificate: bytes, request: EvidenceRequest
    ) -> EvidenceResponse:
        """POST the request to ``<agent_url>/v1/evidence`` within the total deadline."""
        host, port, path = parse_agent_url(agent_url)
        endpoint = (host, port, hashlib.sha256(tls_certificate).digest())
        deadline = time.monotonic() + self._timeout
        body = request.model_dump_json(exclude_defaults=True).encode()
        status, answer = self._post(endpoint, path, body, deadline, agent_url)
        return evidence_from_answer(
            agent_url, status, answer, asked_location=request.include_location
        )

    def close(self) -> None:
        with self._lock:
            for connections in self._idle.values():
                for connection in connections:
                    connection.close()
            self._idle.clear()

    def _post(
        self, endpoint: _Endpoint, path: str, body: bytes, deadline: float, agent_url: str
    ) -> tuple[int, bytes]:
        reused = self._take_idle(endpoint)
        if reused is not None:
            try:
                return self._exchange(reused, endpoint, path, body, deadline, agent_url)
            except _StaleConnection:
                pass  # the agent closed the kept-alive connection meanwhile: one fresh attempt
        connection = self._connect(endpoint, deadline, agent_url)
        try:
            return self._exchange(connection, endpoint, path, body, deadline, agent_url)
        except _StaleConnection as e:
            raise AgentUnreachable(f"agent at {agent_url} closed the connection") from e

    def _connect(
        self, endpoint: _Endpoint, deadline: float, agent_url: str
    ) -> http.client.HTTPSConnection:
        host, port, fingerprint = endpoint
        remaining = deadline - time.monotonic()
        try:
            raw = socket.create_connection((host, port), timeout=max(remaining, 0.001))
        except OSError as e:
            raise AgentUnreachable(f"agent at {agent_url} unreachable: {e}") from e
        tls = self._context.wrap_socket(raw, do_handshake_on_connect=False)
        handle = self._reaper.watch(tls, deadline)
        try:
            tls.do_handshake()
            presented = tls.getpeercert(binary_form=True) or b""
        except (OSError, ssl.SSLError) as e:
            expired = self._reaper.release(handle)
            tls.close()
            if expired:
                raise AgentDeadlineExceeded(f"agent at {agent_url}: TLS handshake too slow") from e
            raise AgentUnreachable(f"agent at {agent_url}: TLS handshake failed: {e}") from e
        self._reaper.release(handle)
        if not hmac.compare_digest(hashlib.sha256(presented).digest(), fingerprint):
            tls.close()
            raise AgentCertificateMismatch(
                f"agent at {agent_url} presented a TLS certificate other than the one pinned at "
                "enrolment"
            )
        connection = http.client.HTTPSConnection(host, port, context=self._context)
        connection.sock = tls
        return connection

    def _exchange(
        self,
        connection: http.client.HTTPSConnection,
        endpoint: _Endpoint,
        path: str,
        body: bytes,
        deadline: float,
        agent_url: str,
    ) -> tuple[int, bytes]:
        sock = connection.sock
        assert sock is not None  # noqa: S101  # pooled connections are connected
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        handle = self._reaper.watch(sock, deadline)
        received = False
        try:
            connection.request("POST", path, body=body, headers=_HEADERS)
            response = connection.getresponse()
            received = True
            answer = response.read(MAX_EVIDENCE_BYTES + 1)
        except (OSError, http.client.HTTPException) as e:
            expired = self._reaper.release(handle)
            connection.close()
            if expired:
                raise AgentDeadlineExceeded(
                    f"agent at {agent_url} did not answer within {self._timeout:.1f} s"
                ) from e
            if not received and isinstance(e, _STALE_ERRORS):
                raise _StaleConnection from e
            raise AgentUnreachable(f"agent at {agent_url} unreachable: {printable(e)}") from e
        if self._reaper.release(handle):  # the answer was cut short by the deadline
            connection.close()
            raise AgentDeadlineExceeded(
                f"agent at {agent_url} did not answer within {self._timeout:.1f} s"
            )
        if len(answer) > MAX_EVIDENCE_BYTES:
            connection.close()
            raise AgentProtocolMismatch(
                f"agent at {agent_url} sent over {MAX_EVIDENCE_BYTES} bytes"
            )
        if response.will_close:
            connection.close()
        else:
            self._give_back(endpoint, connection)
        return response.status, answer

    def _take_idle(self, endpoint: _Endpoint) -> http.client.HTTPSConnection | None:
        with self._lock:
            idle = self._idle.get(endpoint)
            if not idle:
                return None
            self._idle.move_to_end(endpoint)
            return idle.pop()

    def _give_back(self, endpoint: _Endpoint, connection: http.client.HTTPSConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(endpoint, deque())
            self._idle.move_to_end(endpoint)
            if len(idle) >= self._connections:
                connection.close()
            else:
                idle.append(connection)
            while len(self._idle) > MAX_ENDPOINTS:
                _, evicted = self._idle.popitem(last=False)
                for old in evicted:
                    old.close()


class _StaleConnection(Exception):
    """A kept-alive connection the peer had closed: nothing was received, retry once."""


_STALE_ERRORS = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
_HEADERS = {"Content-Type": "application/json", "Connection": "keep-alive"}


def parse_agent_url(agent_url: str) -> tuple[str, int, str]:
    try:
        parts = urlsplit(agent_url)
        port = parts.port or 443
    except ValueError as e:
        raise AgentUrlInvalid(f"agent URL {printable(agent_url)} does not parse: {e}") from e
    if parts.scheme != "https" or not parts.hostname:
        raise AgentUrlInvalid(f"agent URL {printable(agent_url)} is not https://host[:port]")
    return parts.hostname, port, parts.path.rstrip("/") + "/v1/evidence"


def evidence_from_answer(
    agent_url: str, status: int, body: bytes, *, asked_location: bool
) -> EvidenceResponse:
    """What an agent's HTTP answer means (every ``EvidenceSource`` classifies alike): evidence,
    or the fault/failure it is. A body that is not an evidence response is a protocol mismatch."""
    if status != 200:
        raise _refusal(agent_url, status, body, asked_location)
    try:
        return EvidenceResponse.model_validate_json(body)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise AgentProtocolMismatch(
            f"agent at {agent_url} answered with something that is not evidence: "
            f"{where}: {printable(first['msg'])} ({e.error_count()} problem(s))"
        ) from e


def _refusal(
    agent_url: str, status: int, body: bytes, asked_location: bool
) -> AgentUnreachable | AgentProtocolMismatch | LocationMissing:
    code = _peer_error_code(body)
    what = f"agent at {agent_url} answered {status} ({code or 'no error code'})"
    if asked_location and code == "gnss_unavailable":
        return LocationMissing(f"{what}: no location fix to sign")
    if 400 <= status < 500:
        return AgentProtocolMismatch(f"{what} to an evidence request: {printable(body[:200])}")
    return AgentUnreachable(what)


def _peer_error_code(body: bytes) -> str | None:
    try:
        return error_code(json.loads(body[:4096])["error"]["code"])
    except (ValueError, KeyError, TypeError, RecursionError):
        return None


def _client_context(identity: ClientIdentity) -> ssl.SSLContext:
    """TLS 1.2+ with the verifier's client certificate; no CA store and no hostname check: the
    server is trusted only through the pinned fingerprint checked after each handshake."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(identity.cert_file, identity.key_file)
    return context
