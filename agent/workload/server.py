"""Serving the workload API on a Unix socket: the stdlib HTTP parser, a thread per connection,
and the caller's kernel credentials taken when the connection is accepted.

The socket is created by the agent (an existing socket file is replaced; any other file at the
path is refused), given ``mode`` and ``group`` before it listens, so no process outside them can
connect even for a moment. Each connection's caller is identified from ``SO_PEERCRED`` before
anything is read from it; nothing the client sends can change who it is. Connections are kept
alive (HTTP/1.1, ``Content-Length`` bodies up to 64 KiB, no chunked bodies).

Why not werkzeug as for the evidence API: it closes every connection and waits 10 ms after
each answer for data left in the socket, which alone is ten times the cached-token goal.
"""

from __future__ import annotations

import grp
import logging
import os
import socket
import socketserver
import stat
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from agent.workload.api import MAX_BODY_BYTES, WorkloadApi
from agent.workload.peer import Caller, peer_credentials
from geoattest.errors import ConfigurationError, GeoattestError

__all__ = ["WorkloadServer", "make_workload_server"]

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 30.0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT
    server: WorkloadServer
    caller: Caller | GeoattestError

    def setup(self) -> None:
        super().setup()
        try:
            self.caller = self.server.api.hasher.identify(peer_credentials(self.connection))
        except GeoattestError as e:
            log.info("workload caller not identified: %s", e.message)
            self.caller = e

    def finish(self) -> None:
        if isinstance(self.caller, Caller):
            self.caller.close()
        super().finish()

    def do_GET(self) -> None:  # http.server's naming
        self._serve(b"")

    def do_POST(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._send(411, b'{"error":{"code":"length_required","message":"no chunked bodies"}}')
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self.close_connection = True
            self._send(413, b'{"error":{"code":"malformed_request","message":"bad body length"}}')
            return
        self._serve(self.rfile.read(length))

    def _serve(self, body: bytes) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        path = self.path.split("?", 1)[0]
        answer = self.server.api.answer(self.caller, self.command, path, headers, body)
        self._send(answer.status, answer.body)

    def _send(self, status: int, body: bytes) -> None:
        self.send_response_only(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # stdlib's name
        log.debug("workload " + format, *args)


class WorkloadServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, path: Path, api: WorkloadApi, listener: socket.socket) -> None:
        self.path = path
        self.api = api
        super().__init__(str(path), _Handler, bind_and_activate=False)
        self.socket.close()  # the listener bound and given its mode by make_workload_server
        self.socket = listener

    def remove(self) -> None:
        """Close the listener and remove the socket file (if it is still ours: a socket)."""
        self.server_close()
        try:
            if stat.S_ISSOCK(self.path.lstat().st_mode):
                self.path.unlink()
        except FileNotFoundError:
            pass


def make_workload_server(
    api: WorkloadApi, path: Path, *, mode: int = 0o660, group: str | None = None
) -> WorkloadServer:
    """Bind the workload socket at ``path`` (see the module docstring); call ``serve_forever``.
    ``ConfigurationError`` when the path holds something other than a socket, or the group does
    not exist."""
    path = path.absolute()
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ConfigurationError(f"{path} exists and is not a socket; refusing to replace it")
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    gid = _gid(group)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket is born owner-only, then given its mode
    try:
        listener.bind(str(path))
    finally:
        os.umask(old)
    if gid is not None:
        os.chown(path, -1, gid)
    os.chmod(path, mode)
    listener.listen(128)
    return WorkloadServer(path, api, listener)


def _gid(group: str | None) -> int | None:
    if group is None:
        return None
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError as e:
        raise ConfigurationError(f"workload_socket_group: no group {group!r}") from e
