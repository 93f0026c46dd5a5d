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

import hashlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from verifier.core.states import AgentMode
from verifier.engine.fleet import FleetConfig
from verifier.web.push_api import PEER_CERTIFICATE

__all__ = ["PushServer", "PushTrust"]

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT_SECONDS = 10.0
IDLE_TIMEOUT_SECONDS = 60.0  # an agent keeps its connection between challenge and post


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
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_cert_chain(self._cert_file, self._key_file)
        if registered:  # DER, concatenated: every registered certificate is its own anchor
            context.load_verify_locations(cadata=b"".join(sorted(registered)))
        return context


class _Handler(WSGIRequestHandler):
    timeout = IDLE_TIMEOUT_SECONDS

    def make_environ(self) -> dict[str, Any]:
        environ = super().make_environ()
        connection = self.connection
        if isinstance(connection, ssl.SSLSocket):
            environ[PEER_CERTIFICATE] = connection.getpeercert(binary_form=True)
        return environ

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("%s %s -> %s", self.command, self.path, code)


class PushServer(ThreadedWSGIServer):
    """werkzeug's threaded WSGI server; TLS per connection with the current ``PushTrust``."""

    def __init__(self, host: str, port: int, app: Flask, trust: PushTrust) -> None:
        super().__init__(host, port, app, handler=_Handler)
        self._trust = trust
        self.ssl_context = trust.context()  # werkzeug reads it for wsgi.url_scheme

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
        except (ssl.SSLError, OSError) as e:
            log.info("push connection from %s dropped: %s", client_address[0], e)
            return
        try:
            tls.do_handshake()
        except (ssl.SSLError, OSError) as e:
            log.info("push TLS handshake with %s refused: %s", client_address[0], e)
            tls.close()
            return
        presented = tls.getpeercert(binary_form=True) or b""
        log.debug("push client %s: certificate %s", client_address[0],
                  hashlib.sha256(presented).hexdigest()[:16])  # fmt: skip
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()


def make_push_server(app: Flask, trust: PushTrust, host: str, port: int) -> PushServer:
    """Bind the push listener on ``host:port`` (0 for a free port); call ``serve_forever``."""
    return PushServer(host, port, app, trust)
