"""The agent's HTTPS server: app factory, mTLS listener, and ``serve(settings)`` for the CLI.

Why werkzeug's threaded server and not gunicorn or waitress (ADR 0001's default): the agent has
one client, the verifier, polling at a low rate (a round every few seconds), and it holds a TPM
connection that cannot be shared: swtpm serves one connection at a time, ``/dev/tpmrm0`` handles
and ESAPI contexts do not survive ``fork``, so pre-forking workers would each need their own TPM
session and would fight over the device. One process with a few threads behind one lock is what
the TPM allows anyway. Waitress has no TLS, and terminating TLS in a proxy would move the client
certificate check out of the process that owns the key.

The TLS handshake runs in the connection's worker thread with a timeout (werkzeug would run it
inside ``accept`` on the serving thread, where one silent client stalls everyone).

With ``gnss_source`` set, a ``LocationProvider`` reads the receiver in a background thread and
signs the latest fix with the location key for rounds that ask for location (``agent enrol
--gnss`` registered that key).
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from flask import Flask
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from agent.api import EVIDENCE_SERVICE, blueprint, metrics_blueprint
from agent.evidence import BootLogFile, EvidenceService, QuotingTpm
from agent.gnss.spec import open_source
from agent.ima_source import ImaLogSource
from agent.location import LocationProvider
from agent.tls import ensure_server_identity, server_ssl_context
from agent.tpm_device import parse_tcti
from agent.workload.api import WorkloadApi
from agent.workload.peer import ExecutableHasher
from agent.workload.server import WorkloadServer, make_workload_server
from agent.workload.tokens import WorkloadTokens
from agent.workload.verifier_client import SessionQuoter, VerifierTokenClient
from geoattest.errors import ConfigurationError
from geoattest.http import install_api_plumbing
from geoattest.openapi import install_openapi
from geoattest.settings import Settings

__all__ = [
    "AgentServer",
    "RunningWorkloadApi",
    "agent_services",
    "agent_url",
    "create_app",
    "location_provider",
    "make_agent_server",
    "push_forever",
    "serve",
    "start_workload_api",
]

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT_SECONDS = 10.0
IDLE_TIMEOUT_SECONDS = 60.0  # keep-alive connections from the verifier idle between rounds
SINGLE_CONNECTION_TCTIS = frozenset({"swtpm", "mssim"})  # released between requests


def create_app(service: EvidenceService) -> Flask:
    """The agent's Flask app around an ``EvidenceService`` (JSON errors, request ids)."""
    app = Flask("geoattest.agent")
    install_api_plumbing(app)
    app.extensions[EVIDENCE_SERVICE] = service
    app.register_blueprint(blueprint)
    app.register_blueprint(metrics_blueprint)
    install_openapi(app, title="geoattest agent", path_parameters={})  # behind mTLS too
    return app


class _Handler(WSGIRequestHandler):
    timeout = IDLE_TIMEOUT_SECONDS  # applied to the connection by StreamRequestHandler.setup

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("%s %s -> %s", self.command, self.path, code)


class AgentServer(ThreadedWSGIServer):
    """werkzeug's threaded WSGI server over TLS, with the handshake in the worker thread."""

    def __init__(self, host: str, port: int, app: Flask, ssl_context: ssl.SSLContext) -> None:
        super().__init__(host, port, app, handler=_Handler)
        self.socket = ssl_context.wrap_socket(
            self.socket, server_side=True, do_handshake_on_connect=False
        )
        self.ssl_context = ssl_context

    def finish_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: tuple[str, int]
    ) -> None:
        if not isinstance(request, ssl.SSLSocket):  # pragma: no cover - the listener is TLS
            return
        request.settimeout(HANDSHAKE_TIMEOUT_SECONDS)
        try:
            request.do_handshake()
        except (ssl.SSLError, OSError) as e:
            log.info("TLS handshake with %s refused: %s", client_address[0], e)
            return
        super().finish_request(request, client_address)


def make_agent_server(app: Flask, ssl_context: ssl.SSLContext, host: str, port: int) -> AgentServer:
    """Bind the agent API on ``host:port`` (0 for a free port); call ``serve_forever``."""
    return AgentServer(host, port, app, ssl_context)


def agent_url(settings: Settings) -> str:
    """The URL the verifier reaches this agent at: ``agent_url`` or ``https://host:port``."""
    if settings.agent_url:
        return settings.agent_url
    host = settings.agent_host
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{settings.agent_port}"


def location_provider(settings: Settings) -> LocationProvider | None:
    """The (not yet started) location provider ``settings`` configure, None without
    ``gnss_source``. It signs with the device each round holds (see ``EvidenceService``).

    Raises ConfigurationError for a bad source spec, GnssUnavailable for a port that will not open.
    """
    if settings.gnss_source is None:
        return None
    return LocationProvider(
        open_source(settings.gnss_source),
        None,
        settings.location_key_handle,
        max_fix_age_s=settings.location_max_fix_age_seconds,
        wait_for_fix_s=settings.location_wait_for_fix_seconds,
    )


def serve(settings: Settings, open_device: Callable[[], QuotingTpm], agent_id: str) -> None:
    """Serve the evidence API until interrupted. ``agent_id`` names the TLS certificate.

    Raises ConfigurationError when ``verifier_client_ca`` is not set or TLS material is unusable.
    """
    if settings.verifier_client_ca is None:
        raise ConfigurationError(
            "no verifier client CA: set --verifier-ca PEM (GEOATTEST_VERIFIER_CLIENT_CA); the "
            "agent serves nothing without client certificates"
        )
    identity = ensure_server_identity(settings.agent_state_dir, agent_id, settings.agent_host)
    context = server_ssl_context(identity.cert_path, identity.key_path, settings.verifier_client_ca)
    with agent_services(settings, open_device, agent_id) as service:
        server = make_agent_server(
            create_app(service), context, settings.agent_host, settings.agent_port
        )
        log.info("agent %s serving evidence on %s", agent_id, agent_url(settings))
        try:
            server.serve_forever()
        finally:
            server.server_close()


def push_forever(settings: Settings, open_device: Callable[[], QuotingTpm], agent_id: str) -> None:
    """Push rounds to ``verifier_push_url`` until interrupted (ADR 19), with the GNSS reader and
    workload API of a pull agent; the registered certificate is the client certificate.

    Raises ConfigurationError without ``verifier_push_url`` or ``verifier_client_ca``."""
    from agent.push import PushClient

    if settings.verifier_push_url is None or settings.verifier_client_ca is None:
        raise ConfigurationError(
            "push needs --push-url (GEOATTEST_VERIFIER_PUSH_URL) and --verifier-ca "
            "(GEOATTEST_VERIFIER_CLIENT_CA)"
        )
    identity = ensure_server_identity(settings.agent_state_dir, agent_id, settings.agent_host)
    stop = threading.Event()
    with agent_services(settings, open_device, agent_id) as service:
        client = PushClient(
            settings.verifier_push_url,
            agent_id,
            service,
            client_cert=(identity.cert_path, identity.key_path),
            verifier_ca=settings.verifier_client_ca,
            timeout=settings.http_timeout_seconds,
        )
        log.info("agent %s pushing evidence to %s", agent_id, settings.verifier_push_url)
        try:
            client.run(settings.push_interval_seconds, stop)
        finally:
            stop.set()
            client.close()


@contextmanager
def agent_services(
    settings: Settings, open_device: Callable[[], QuotingTpm], agent_id: str
) -> Iterator[EvidenceService]:
    """The evidence service of a running agent, with what runs beside it: the GNSS reader
    (``gnss_source``) and the workload API (``workload_socket``); all stopped when the block
    ends. Pull (``serve``) and push (``agent push``) agents run the same ones."""
    location = location_provider(settings)
    service = EvidenceService(
        open_device,
        ImaLogSource(settings.ima_log_path),
        ak_handle=settings.ak_handle,
        location=location,
        hold_connection=parse_tcti(settings.tcti)[0] not in SINGLE_CONNECTION_TCTIS,
        boot_log=BootLogFile(settings.boot_log_path),
    )
    workload = None
    try:
        if location is not None:
            location.start()
            log.info("reading GNSS from %s", settings.gnss_source)
        workload = start_workload_api(settings, service, agent_id)
        yield service
    finally:
        if workload is not None:
            workload.stop()
        if location is not None:
            location.close()
        service.close()


class RunningWorkloadApi:
    """The running workload API: its socket server thread and token cache."""

    def __init__(self, server: WorkloadServer, tokens: WorkloadTokens) -> None:
        self.server = server
        self.tokens = tokens
        self._thread = threading.Thread(
            target=server.serve_forever, name="workload-api", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.remove()
        self._thread.join(timeout=5)
        self.tokens.close()


def start_workload_api(
    settings: Settings, quoter: SessionQuoter, agent_id: str
) -> RunningWorkloadApi | None:
    """Serve the workload API on ``settings.workload_socket`` (None: not configured)."""
    if settings.workload_socket is None:
        return None
    client = VerifierTokenClient(
        settings.verifier_url, agent_id, quoter, timeout=settings.http_timeout_seconds
    )
    tokens = WorkloadTokens(client, poll_seconds=settings.token_status_poll_seconds)
    hasher = ExecutableHasher(max_bytes=settings.workload_max_executable_bytes)
    server = make_workload_server(
        WorkloadApi(tokens, hasher),
        settings.workload_socket,
        mode=settings.workload_socket_mode,
        group=settings.workload_socket_group,
    )
    tokens.start()
    log.info("workload API on %s (tokens from %s)", settings.workload_socket, settings.verifier_url)
    return RunningWorkloadApi(server, tokens)
