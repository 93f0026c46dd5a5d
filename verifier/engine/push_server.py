"""The push listener: HTTPS with client certificates, trusting exactly the registered ones.

A push agent presents the self-signed certificate it registered at enrolment (the one a pull
verifier pins). The listener's trust store holds the registered certificates of the push agents
and nothing else, rebuilt whenever the fleet configuration changes (an agent added, refreshed or
removed), so the handshake itself refuses any other certificate; ``PushRounds`` then checks that
the certificate is the one of the agent the request names. The listener's own certificate is
issued by the verifier's client CA, which agents already trust (``verifier_client_ca``).

Why werkzeug's threaded server (as the agent's): waitress has no TLS, and terminating TLS in a
proxy would move the client-certificate check out of the process that decides. Each accepted
socket is wrapped, and its handshake run, in the connection's own thread with a timeout, with
the trust store current at that moment.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from email.message import Message
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from geoattest.pinned_certificate import CertificateNotPinnable, pinnable_certificate
from geoattest.tls_material import fingerprint
from geoattest.untrusted import printable
from verifier.core.states import AgentMode
from verifier.engine.fleet import FleetConfig
from verifier.web.push_api import PEER_CERTIFICATE

__all__ = ["PushServer", "PushTrust", "make_push_server", "trust_anchor"]

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT_SECONDS = 10.0
IDLE_TIMEOUT_SECONDS = 15.0  # a kept-alive connection between requests (and rounds)
REQUEST_DEADLINE_SECONDS = 30.0  # headers and body of one request, plus the body's upload time
MIN_UPLOAD_BYTES_PER_SECOND = 64 * 1024  # the slowest uplink a body is given time for
MAX_CONNECTIONS = 1024  # threads at once; a push agent keeps one connection between rounds


class PushTrust:
    """The server context of the push listener, trusting the push agents' registered
    certificates of the current fleet configuration."""

    def __init__(self, cert_file: Path, key_file: Path, fleet: Callable[[], FleetConfig]) -> None:
        self._cert_file = cert_file
        self._key_file = key_file
        self._fleet = fleet
        self._lock = threading.Lock()
        self._version: int | None = None
        self._context = self._build(set())

    def context(self) -> ssl.SSLContext:
        fleet = self._fleet()
        with self._lock:
            if fleet.version != self._version:
                registered = {
                    target.tls_certificate
                    for target in fleet.targets.values()
                    if target.mode is AgentMode.PUSH
                }
                self._context = self._build(registered)
                self._version = fleet.version
                log.debug("push trust store: %d registered certificate(s)", len(registered))
            return self._context

    def _build(self, registered: set[bytes]) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # TLS 1.3 only: our agents speak it, and it has no renegotiation to abuse.
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.options |= ssl.OP_NO_RENEGOTIATION
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_cert_chain(self._cert_file, self._key_file)
        for der in sorted(registered):  # every registered certificate is its own anchor
            trust_anchor(context, der)
        return context


def trust_anchor(context: ssl.SSLContext, der: bytes) -> bool:
    """Add one registered certificate to ``context``'s trust store when it can be pinned.

    One at a time, so that one stored certificate that is not a self-signed leaf (a record
    written before enrolment checked them, or a database edited by hand) only locks out its own
    agent: loaded together, a certificate that does not parse would empty the whole store, and
    a CA certificate would vouch for every certificate it signs."""
    try:
        pinnable_certificate(der)
        context.load_verify_locations(cadata=der)
    except (CertificateNotPinnable, ssl.SSLError) as e:
        log.warning(
            "push trust store: registered certificate %s left out: %s", fingerprint(der)[:16], e
        )
        return False
    return True


class _RequestReader:
    """The connection's read side for one request after another (HTTP/1.1 keep-alive).

    werkzeug closes every connection, because after an answer it reads whatever the peer sent
    next (the rest of an unread body, so that the peer sees the answer rather than a reset)
    and would eat the next request. This reader counts the body bytes the application read,
    and once an answer is kept alive it reads nothing more (``hold``) until the next request
    starts (``release``): werkzeug's drain then finds nothing, and the next request line stays
    buffered for the next ``handle_one_request``."""

    def __init__(self, raw: io.BufferedIOBase) -> None:
        self._raw = raw
        self._held = False
        self.body_read = 0

    def start_body(self) -> None:
        self.body_read = 0

    def hold(self) -> None:
        self._held = True

    def release(self) -> None:
        self._held = False

    def read(self, size: int = -1) -> bytes:
        if self._held:
            return b""
        data = self._raw.read(size)
        self.body_read += len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        if self._held:
            return 0
        count = self._raw.readinto(buffer)
        self.body_read += count
        return count

    def readline(self, size: int = -1) -> bytes:
        if self._held:
            return b""
        data = self._raw.readline(size)
        self.body_read += len(data)
        return data

    def close(self) -> None:
        self._raw.close()

    @property
    def closed(self) -> bool:
        return self._raw.closed


class _Handler(WSGIRequestHandler):
    timeout = IDLE_TIMEOUT_SECONDS
    # Headers and body go out as separate writes: with Nagle the body waits for the peer's
    # delayed ACK (~40 ms a request on a kept-alive connection).
    disable_nagle_algorithm = True
    _deadline: threading.Timer | None = None
    rfile: Any

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self._push_server.idle_timeout)
        self.rfile = _RequestReader(self.rfile)

    @property
    def _push_server(self) -> PushServer:
        server: PushServer = self.server  # type: ignore[assignment]
        return server

    def handle_one_request(self) -> None:
        self.rfile.release()
        server = self._push_server
        # The request line may wait for the idle timeout, but not drip in for ever (the idle
        # timeout is per recv: one byte now and then would keep it waiting).
        self._arm(server.idle_timeout + server.request_deadline)
        try:
            super().handle_one_request()
        finally:
            self._arm(None)

    def parse_request(self) -> bool:
        # The request line is in: the headers must follow within the request deadline, and
        # the body within it plus what its length takes at ``MIN_UPLOAD_BYTES_PER_SECOND``
        # (a first round's whole IMA log over a slow uplink), however slowly a peer drips.
        server = self._push_server
        self._arm(server.request_deadline)
        parsed = bool(super().parse_request())
        if parsed:
            length = _content_length(self.headers) or 0
            self._arm(server.request_deadline + length / MIN_UPLOAD_BYTES_PER_SECOND)
        self.rfile.start_body()
        return parsed

    def _arm(self, seconds: float | None) -> None:
        """Replace the running deadline with one ``seconds`` from now (None: no deadline)."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if seconds is not None:
            self._deadline = threading.Timer(seconds, self._cut_off)
            self._deadline.daemon = True
            self._deadline.start()

    def send_header(self, keyword: str, value: str) -> None:
        # werkzeug sends "Connection: close" with every answer; keep the connection instead
        # when the next request can be read cleanly: the body was read whole, and neither side
        # asked to close. Two TLS handshakes per push round cost more than judging it.
        if keyword.lower() == "connection" and value.lower() == "close" and self._keeps_alive():
            self.rfile.hold()
            return
        super().send_header(keyword, value)

    def _keeps_alive(self) -> bool:
        headers = getattr(self, "headers", None)  # absent when the request line did not parse
        if headers is None or self.close_connection or self.request_version != "HTTP/1.1":
            return False
        if "Transfer-Encoding" in headers:
            return False
        length = _content_length(headers)
        return length is not None and self.rfile.body_read == length

    def _cut_off(self) -> None:
        log.info("push request from %s cut off: over its deadline", self.client_address[0])
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)  # unblocks the recv

    def make_environ(self) -> dict[str, Any]:
        environ = super().make_environ()
        connection = self.connection
        if isinstance(connection, ssl.SSLSocket):
            environ[PEER_CERTIFICATE] = connection.getpeercert(binary_form=True)
        return environ

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = getattr(self, "path", None) or self.requestline  # absent when it did not parse
        log.debug("%s %s -> %s", printable(self.command, 16), printable(path, 200), code)


def _content_length(headers: Message) -> int | None:
    """The request's body length: 0 without the header; None when it cannot be trusted to
    frame the next request (not a plain number, or given twice: werkzeug reads the last one)."""
    given = headers.get_all("Content-Length") or []
    if not given:
        return 0
    if len(given) > 1 or not given[0].strip().isdigit():
        return None
    return int(given[0])


class PushServer(ThreadedWSGIServer):
    """werkzeug's threaded WSGI server with TLS per connection (the current ``PushTrust``), at
    most ``max_connections`` at once: beyond that a new connection is closed at once rather than
    given a thread, so a flood of peers that never finish a handshake cannot exhaust memory."""

    def __init__(
        self,
        host: str,
        port: int,
        app: Flask,
        trust: PushTrust,
        *,
        max_connections: int = MAX_CONNECTIONS,
        request_deadline: float = REQUEST_DEADLINE_SECONDS,
        idle_timeout: float = IDLE_TIMEOUT_SECONDS,
        sock: socket.socket | None = None,
    ) -> None:
        """``sock``: a bound, listening socket to serve (shared by forked processes) instead of
        binding ``host:port``."""
        fd = sock.fileno() if sock is not None else None
        super().__init__(host, port, app, handler=_Handler, fd=fd)
        self.request_deadline = request_deadline
        self.idle_timeout = idle_timeout
        self._trust = trust
        self._slots = threading.BoundedSemaphore(max_connections)
        self._refused_at = 0.0
        self.ssl_context = trust.context()  # werkzeug reads it for wsgi.url_scheme

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: tuple[str, int]
    ) -> None:
        if not self._slots.acquire(blocking=False):
            now = time.monotonic()
            if now - self._refused_at > 10.0:  # one line per 10 s, not one per connection
                self._refused_at = now
                log.warning("push listener full: closing new connections")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: tuple[str, int]
    ) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def finish_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: tuple[str, int]
    ) -> None:
        if not isinstance(request, socket.socket):  # pragma: no cover - TCP only
            return
        request.settimeout(HANDSHAKE_TIMEOUT_SECONDS)
        try:
            tls = self._trust.context().wrap_socket(
                request, server_side=True, do_handshake_on_connect=False
            )
        except Exception:  # no trust store, no connection; the listener itself stays up
            log.exception("push connection from %s dropped: no TLS context", client_address[0])
            return
        try:
            tls.do_handshake()
        except (ssl.SSLError, OSError) as e:  # anyone can try: debug, not a line per attempt
            log.debug("push TLS handshake with %s refused: %s", client_address[0], e)
            tls.close()
            return
        presented = tls.getpeercert(binary_form=True) or b""
        log.debug("push client %s: certificate %s", client_address[0],
                  hashlib.sha256(presented).hexdigest()[:16])  # fmt: skip
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()


def make_push_server(
    app: Flask,
    trust: PushTrust,
    host: str,
    port: int,
    *,
    max_connections: int = MAX_CONNECTIONS,
    request_deadline: float = REQUEST_DEADLINE_SECONDS,
    idle_timeout: float = IDLE_TIMEOUT_SECONDS,
    sock: socket.socket | None = None,
) -> PushServer:
    """Bind the push listener on ``host:port`` (0 for a free port), or serve ``sock``; call
    ``serve_forever``."""
    return PushServer(
        host,
        port,
        app,
        trust,
        max_connections=max_connections,
        request_deadline=request_deadline,
        idle_timeout=idle_timeout,
        sock=sock,
    )
