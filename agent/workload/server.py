"""Serving the workload API on a Unix socket, with the caller's kernel credentials per request.

The socket is created by the agent (an existing socket file is replaced; any other file at the
path is refused), given ``mode`` and ``group`` before it listens, so no process outside them can
connect even for a moment. Each connection's ``SO_PEERCRED`` is read by the request handler and
put in the WSGI environ (``agent.workload.api.PEER_ENVIRON``); nothing the client sends can
change it.
"""

from __future__ import annotations

import grp
import logging
import os
import socket
import stat
from pathlib import Path

from flask import Flask
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from agent.workload.api import HASHER, PEER_ENVIRON, TOKENS, blueprint
from agent.workload.peer import Caller, ExecutableHasher, peer_credentials
from agent.workload.tokens import WorkloadTokens
from geoattest.errors import ConfigurationError, GeoattestError
from geoattest.http import install_api_plumbing

__all__ = ["WorkloadServer", "create_workload_app", "make_workload_server"]

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 30.0


def create_workload_app(tokens: WorkloadTokens, hasher: ExecutableHasher) -> Flask:
    app = Flask("geoattest.workload")
    install_api_plumbing(app)
    app.extensions[TOKENS] = tokens
    app.extensions[HASHER] = hasher
    app.register_blueprint(blueprint)
    return app


class _Handler(WSGIRequestHandler):
    """Identifies the caller once, when its connection is accepted (before it sent anything),
    and hands that identity to every request on the connection; the view checks before each
    answer that the process is still the one identified."""

    timeout = REQUEST_TIMEOUT
    caller: Caller | GeoattestError

    def setup(self) -> None:
        super().setup()
        hasher: ExecutableHasher = self.server.app.extensions[HASHER]  # type: ignore[attr-defined]  # a WSGI server of ours
        try:
            self.caller = hasher.identify(peer_credentials(self.connection))
        except GeoattestError as e:
            log.info("workload caller not identified: %s", e.message)
            self.caller = e

    def finish(self) -> None:
        if isinstance(self.caller, Caller):
            self.caller.close()
        super().finish()

    def make_environ(self) -> dict[str, object]:
        environ: dict[str, object] = dict(super().make_environ())
        environ[PEER_ENVIRON] = self.caller
        return environ

    def address_string(self) -> str:
        return "unix"

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("workload %s %s -> %s", self.command, self.path, code)


class WorkloadServer(ThreadedWSGIServer):
    def __init__(self, path: Path, app: Flask, listener: socket.socket) -> None:
        self.path = path
        super().__init__(f"unix://{path}", 0, app, handler=_Handler, fd=listener.fileno())
        listener.close()  # werkzeug duplicated it

    def remove(self) -> None:
        """Close the listener and remove the socket file (if it is still ours: a socket)."""
        self.server_close()
        try:
            if stat.S_ISSOCK(self.path.lstat().st_mode):
                self.path.unlink()
        except FileNotFoundError:
            pass


def make_workload_server(
    app: Flask, path: Path, *, mode: int = 0o660, group: str | None = None
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
    return WorkloadServer(path, app, listener)


def _gid(group: str | None) -> int | None:
    if group is None:
        return None
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError as e:
        raise ConfigurationError(f"workload_socket_group: no group {group!r}") from e
