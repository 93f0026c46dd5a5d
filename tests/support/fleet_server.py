"""A fleet of simulated agents behind one loopback port, for fleet benchmarks and e2e tests.

N ``AgentSimulator``s (software TPMs producing genuine-format quotes and real ima-ng lines)
are served by one asyncio HTTP/1.1 server, routed by path:

    POST {base}/agents/<agent_id>/v1/evidence     GET {base}/agents/<agent_id>/v1/healthz

so an agent's URL is ``{base}/agents/<agent_id>``. One port instead of one per agent: 10,000
listening sockets and TLS contexts would cost more than the agents, and a verifier keeps one
keep-alive pool for the whole fleet instead of one connection per agent. TLS is optional: with
a server certificate (shared by the simulated agents, so every agent registers the same pin)
and optionally a client CA, the verifier's real mTLS client code is exercised.

Enrolment uses the agent's own ``agent.enrolment.enrol`` on each simulator's software TPM
against a real registrar (software ActivateCredential).

Run ``python -m bench.fleet_load --agents 1000 --measure 10`` to serve a fleet and measure the
evidence rate it sustains from a client in another process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import TypeVar

from agent.enrolment import ApiEndpoint, enrol
from agent.registrar_client import RegistrarClient
from agent.tls import ensure_server_identity, server_ssl_context
from agent.tpm_device import DEFAULT_LOCATION_KEY_HANDLE
from geoattest.tls_material import ClientTlsFiles, ensure_verifier_client_tls
from geoattest.wire import AgentView
from tests.support.agent_simulator import AgentSimulator

__all__ = [
    "FleetServer",
    "FleetTls",
    "agent_path",
    "client_ssl_context",
    "enrol_fleet",
    "fleet_tls",
    "serve_fleet",
]

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 256 * 1024
AGENTS_PREFIX = "/agents/"

_T = TypeVar("_T")


def agent_path(agent_id: str) -> str:
    """The path prefix of one simulated agent's API."""
    return f"{AGENTS_PREFIX}{agent_id}"


class FleetServer:
    """Serves ``sims`` on ``host:port`` (0 picks a free port) from a background event loop.

    Use as a context manager, or ``start()``/``stop()``. ``ssl_context`` makes it HTTPS.
    An agent id in ``offline`` gets its connections dropped without an answer; one in
    ``trickle`` gets its answer's headers at once and then its body one byte per second (a
    slow-drip peer); one in ``refuse`` gets that raw (status, body) instead of evidence; one in
    ``delay`` gets its answer that many seconds late (a round held in flight).
    ``on_evidence``, when set, is called with the agent id of every evidence request served.
    """

    def __init__(
        self,
        sims: Iterable[AgentSimulator],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.sims = {sim.agent_id: sim for sim in sims}
        self.offline: set[str] = set()
        self.trickle: set[str] = set()
        self.refuse: dict[str, tuple[int, bytes]] = {}
        self.delay: dict[str, float] = {}
        self._host, self._port = host, port
        self._ssl = ssl_context
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.requests = 0
        self.on_evidence: Callable[[str], None] | None = None

    @property
    def base_url(self) -> str:
        scheme = "https" if self._ssl else "http"
        return f"{scheme}://{self._host}:{self._port}"

    def agent_url(self, agent_id: str) -> str:
        return self.base_url + agent_path(agent_id)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fleet-sim", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=10) or self._server is None:
            raise RuntimeError("fleet simulator did not start")

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def call(self, function: Callable[[], _T], timeout: float = 30.0) -> _T:
        """Run ``function`` on the server's event loop (between requests, so a simulator is never
        changed while it answers) and return its result."""
        loop = self._loop
        if loop is None:
            return function()
        future: Future[_T] = Future()

        def run() -> None:
            try:
                future.set_result(function())
            except BaseException as e:  # handed to the caller
                future.set_exception(e)

        loop.call_soon_threadsafe(run)
        return future.result(timeout)

    def add(self, sims: Iterable[AgentSimulator]) -> None:
        """Serve more simulators (a fleet that grows while it is served)."""
        new = {sim.agent_id: sim for sim in sims}
        self.call(lambda: self.sims.update(new))

    def __enter__(self) -> FleetServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(
                    self._connection, self._host, self._port, ssl=self._ssl, backlog=1024
                )
            )
            self._port = self._server.sockets[0].getsockname()[1]
            self._ready.set()
            loop.run_forever()
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            _cancel_all(loop)
        finally:
            self._ready.set()
            loop.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                method, path, body, keep_alive = request
                answer = self._dispatch(method, path, body)
                if answer is None:  # simulated outage: drop the connection, say nothing
                    writer.transport.abort()
                    return
                response = _response(*answer, keep_alive=keep_alive)
                if (late := self.delay.get(_agent_of(path))) is not None:
                    await asyncio.sleep(late)
                if _agent_of(path) in self.trickle:
                    await _trickle(writer, response)
                else:
                    writer.write(response)
                await writer.drain()
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, ValueError):
            pass
        finally:
            writer.close()
            with suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    def _dispatch(self, method: str, path: str, body: bytes) -> tuple[int, bytes] | None:
        self.requests += 1
        if not path.startswith(AGENTS_PREFIX):
            return _error(HTTPStatus.NOT_FOUND, "not_found", f"no route {path}")
        agent_id, _, route = path[len(AGENTS_PREFIX) :].partition("/")
        sim = self.sims.get(agent_id)
        if sim is None:
            return _error(HTTPStatus.NOT_FOUND, "not_found", f"no simulated agent {agent_id!r}")
        if agent_id in self.offline:
            return None
        if agent_id in self.refuse:
            return self.refuse[agent_id]
        if route == "v1/evidence" and method == "POST":
            if self.on_evidence is not None:
                self.on_evidence(agent_id)
            return sim.answer(body)
        if route == "v1/healthz" and method == "GET":
            return 200, b'{"status":"ok"}'
        return _error(HTTPStatus.NOT_FOUND, "not_found", f"no route {method} {path}")


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, bytes, bool] | None:
    """(method, path, body, keep-alive) of the next request; None at a clean end of stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if e.partial:
            raise
        return None
    if len(head) > MAX_HEADER_BYTES:
        raise ValueError("request head too large")
    lines = head.decode("latin-1").split("\r\n")
    method, path, version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    if not 0 <= length <= MAX_BODY_BYTES:
        raise ValueError("bad content length")
    body = await reader.readexactly(length) if length else b""
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")
    return method, path.split("?", 1)[0], body, keep_alive


def _agent_of(path: str) -> str:
    return path[len(AGENTS_PREFIX) :].partition("/")[0] if path.startswith(AGENTS_PREFIX) else ""


async def _trickle(writer: asyncio.StreamWriter, response: bytes) -> None:
    """Headers at once, then the body one byte a second: every read sees progress, so a
    per-recv timeout never fires; only a total deadline ends it."""
    head, _, body = response.partition(b"\r\n\r\n")
    writer.write(head + b"\r\n\r\n")
    for index in range(len(body)):
        await writer.drain()
        writer.write(body[index : index + 1])
        await asyncio.sleep(1.0)


def _response(status: int, body: bytes, *, keep_alive: bool) -> bytes:
    reason = HTTPStatus(status).phrase
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: {'keep-alive' if keep_alive else 'close'}"
        "\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _error(status: HTTPStatus, code: str, message: str) -> tuple[int, bytes]:
    return status.value, json.dumps({"error": {"code": code, "message": message}}).encode()


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


@contextmanager
def serve_fleet(
    sims: Iterable[AgentSimulator], *, ssl_context: ssl.SSLContext | None = None
) -> Iterator[FleetServer]:
    """A started ``FleetServer`` on a free loopback port for the block."""
    server = FleetServer(sims, ssl_context=ssl_context)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def enrol_fleet(
    registrar_url: str,
    sims: Sequence[AgentSimulator],
    server: FleetServer,
    *,
    tls_certificate: bytes | None = None,
    located: Collection[str] = (),
) -> list[AgentView]:
    """Enrol every simulator with a real registrar (MakeCredential answered in software).

    Each agent registers ``server.agent_url(agent_id)`` and, with TLS, the fleet's shared server
    certificate DER; the agents named in ``located`` also their location key (certified by the
    AK), so that they can give location evidence. Raises the registrar's refusal for the first
    agent it refuses.
    """
    client = RegistrarClient(registrar_url)
    try:
        views = []
        for sim in sims:
            endpoint = None
            if tls_certificate is not None:
                api = ApiEndpoint(
                    url=server.agent_url(sim.agent_id), tls_certificate=tls_certificate
                )
                endpoint = _Endpoint(api)
            handle = DEFAULT_LOCATION_KEY_HANDLE if sim.agent_id in located else None
            views.append(
                enrol(sim.tpm, client, sim.agent_id, endpoint=endpoint, location_key_handle=handle)
            )
        return views
    finally:
        client.close()


@dataclass(frozen=True, slots=True)
class _Endpoint:
    """The same endpoint for every agent id (``enrol`` asks per agent)."""

    api: ApiEndpoint

    def __call__(self, _agent_id: str) -> ApiEndpoint:
        return self.api


# --- load measurement -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FleetTls:
    """mTLS material of a simulated fleet: one server certificate for all agents (each registers
    it as its pin), and the verifier's client CA and certificate."""

    server_context: ssl.SSLContext
    server_cert: Path
    server_certificate_der: bytes
    client: ClientTlsFiles

    def client_context(self) -> ssl.SSLContext:
        return client_ssl_context(self.server_cert, self.client)


def client_ssl_context(server_cert: Path, client: ClientTlsFiles) -> ssl.SSLContext:
    """What a verifier uses: the pinned server certificate as the only anchor, host name
    checked, and its client certificate."""
    context = ssl.create_default_context(cafile=str(server_cert))
    context.load_cert_chain(client.client_cert, client.client_key)
    return context


def fleet_tls(directory: Path, host: str = "127.0.0.1") -> FleetTls:
    """Create-or-load the fleet's TLS material in ``directory`` (``verifier/`` holds the
    verifier's client CA, key and certificate)."""
    client = ensure_verifier_client_tls(directory / "verifier")
    identity = ensure_server_identity(directory / "fleet", "fleet-sim", host, renew=True)
    context = server_ssl_context(identity.cert_path, identity.key_path, client.ca_cert)
    return FleetTls(context, identity.cert_path, identity.certificate_der, client)
