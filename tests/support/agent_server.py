"""The agent's real evidence API (mTLS, werkzeug) served in a thread for a test."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from agent.evidence import EvidenceService
from agent.server import create_app, make_agent_server


@contextmanager
def serving_agent(service: EvidenceService, context: ssl.SSLContext) -> Iterator[str]:
    """Serve ``service`` on a free loopback port with ``context``; yields the agent's URL. The
    server, its thread and the service's TPM connection are closed when the block ends."""
    server = make_agent_server(create_app(service), context, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, name="agent-api", daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        service.close()
