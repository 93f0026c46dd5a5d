"""A WSGI app served over real HTTP in a thread on a loopback port, stoppable and startable again
on the same port (a service that goes down and comes back, for fault tests); ``served`` is the
one launcher every in-process API of the suites runs in."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server


class ServedApp:
    """werkzeug's threaded server: it stops cleanly from another thread (waitress cannot)."""

    def __init__(self, app: Flask, name: str, port: int = 0) -> None:
        self.app = app
        self.name = name
        self.port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=self.name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting and close the listening socket: connections are refused until
        ``start`` (on the same port)."""
        if self._server is None or self._thread is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = self._thread = None


@contextmanager
def served(app: Flask, name: str = "served-app") -> Iterator[str]:
    """Serve ``app`` on a free loopback port until the block ends; yields its URL."""
    running = ServedApp(app, name)
    running.start()
    try:
        yield running.url
    finally:
        running.stop()
