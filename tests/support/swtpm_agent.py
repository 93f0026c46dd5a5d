"""A real agent node for end-to-end tests: its swtpm, an IMA log written as a kernel would (PCR 10
extended in the swtpm), and the agent's evidence API over mTLS in a thread."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from agent.evidence import EvidenceService
from agent.ima_source import ImaLogSource
from agent.server import AgentServer, create_app, make_agent_server
from agent.tls import ensure_server_identity, server_ssl_context
from agent.tpm_device import TpmDevice
from geoattest.dev.ima_emulator import ImaEmulator
from geoattest.dev.swtpm import SwtpmInstance


@dataclass
class Node:
    """One edge node: its swtpm, its IMA log (kernel stand-in) and its evidence API."""

    agent_id: str
    swtpm: SwtpmInstance
    ima: ImaEmulator
    state_dir: Path
    client_ca: Path
    port: int = 0
    server: AgentServer | None = None
    thread: threading.Thread | None = None
    services: list[EvidenceService] = field(default_factory=list)

    def start_api(self, tcti: str | None = None) -> None:
        """Serve the evidence API (on the same port after a restart), quoting with ``tcti``."""
        identity = ensure_server_identity(self.state_dir, self.agent_id, "127.0.0.1")
        context = server_ssl_context(identity.cert_path, identity.key_path, self.client_ca)
        tpm = tcti or self.swtpm.tcti
        service = EvidenceService(
            lambda: TpmDevice(tpm),
            ImaLogSource(self.ima.log_path),
            ak_handle=0x81010002,
            hold_connection=False,
        )
        self.services.append(service)
        self.server = make_agent_server(create_app(service), context, "127.0.0.1", self.port)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop_api(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=5)
            self.server = self.thread = None
        for service in self.services:
            service.close()
