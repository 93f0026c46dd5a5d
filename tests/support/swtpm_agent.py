"""A real agent node for end-to-end tests: its swtpm, an IMA log written as a kernel would (PCR 10
extended in the swtpm), optionally a location provider, and the agent's evidence API over mTLS in
a thread; ``start_node`` boots, serves and enrols one in a single call.

``swtpm_node_policy`` is the policy such a node passes: the swtpm's PCRs 0-7 are all zeros, IMA is
replayed in sha256 and the boot aggregate of those zeros is allowed.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent.enrolment import ApiEndpoint, enrol
from agent.evidence import EvidenceService
from agent.ima_source import ImaLogSource
from agent.location import LocationProvider
from agent.server import AgentServer, create_app, make_agent_server
from agent.tls import ensure_server_identity, server_ssl_context
from agent.tpm_device import DEFAULT_AK_HANDLE, DEFAULT_LOCATION_KEY_HANDLE, TpmDevice
from geoattest.dev.ima_emulator import ImaEmulator, boot_aggregate_digest
from geoattest.dev.swtpm import SwtpmInstance
from geoattest.registrar_client import RegistrarClient
from geoattest.wire import AgentView
from geofence import GnssReceiver
from tests.support.registrar_server import RunningRegistrar


@dataclass
class Node:
    """One edge node: its swtpm, its IMA log (kernel stand-in), its location provider (None: a
    node without GNSS) and its evidence API, which can be stopped and started again."""

    agent_id: str
    swtpm: SwtpmInstance
    ima: ImaEmulator
    state_dir: Path
    client_ca: Path
    location: LocationProvider | None = None
    gnss_receiver: GnssReceiver | None = None  # what it enrols as its GNSS receiver
    port: int = 0
    server: AgentServer | None = None
    thread: threading.Thread | None = None
    services: list[EvidenceService] = field(default_factory=list)

    def start_api(self, tcti: str | None = None) -> ApiEndpoint:
        """Serve the evidence API (on the same port after a restart), quoting with ``tcti``
        (another TPM's, to impersonate); returns the endpoint to register."""
        identity = ensure_server_identity(self.state_dir, self.agent_id, "127.0.0.1")
        context = server_ssl_context(identity.cert_path, identity.key_path, self.client_ca)
        tpm = tcti or self.swtpm.tcti
        service = EvidenceService(
            lambda: TpmDevice(tpm),
            ImaLogSource(self.ima.log_path),
            ak_handle=DEFAULT_AK_HANDLE,
            location=self.location,
            hold_connection=False,
        )
        self.services.append(service)
        self.server = make_agent_server(create_app(service), context, "127.0.0.1", self.port)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return ApiEndpoint(
            url=f"https://127.0.0.1:{self.port}", tls_certificate=identity.certificate_der
        )

    def stop_api(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=5)
            self.server = self.thread = None
        for service in self.services:
            service.close()
        self.services.clear()

    def enrol(self, registrar: RegistrarClient, endpoint: ApiEndpoint) -> AgentView:
        """Enrol with the registrar (and the location key when the node has a provider)."""
        handle = DEFAULT_LOCATION_KEY_HANDLE if self.location is not None else None
        with TpmDevice(self.swtpm.tcti) as device:
            return enrol(
                device,
                registrar,
                self.agent_id,
                endpoint=lambda _agent_id: endpoint,
                location_key_handle=handle,
                gnss_receiver=self.gnss_receiver,
            )

    def clean_boot(self) -> None:
        """A reboot: TPM Reset (resetCount up, PCRs back to zero), a new IMA log."""
        self.swtpm.restart()
        self.ima.new_boot()
        self.ima.boot_aggregate()


def start_node(
    swtpm: SwtpmInstance,
    workdir: Path,
    agent_id: str,
    *,
    client_ca: Path,
    registrar: RunningRegistrar,
    location: LocationProvider | None = None,
    measured: Mapping[str, bytes] | None = None,
    gnss_receiver: GnssReceiver | None = None,
) -> Node:
    """A booted node (boot aggregate, then ``measured``: path → SHA-256 digest, in the IMA log),
    its API serving and enrolled with ``registrar`` (with ``gnss_receiver``, when given)."""
    node = Node(
        agent_id=agent_id,
        swtpm=swtpm,
        ima=ImaEmulator(swtpm.tcti, workdir / "ascii_runtime_measurements"),
        state_dir=workdir / "agent",
        client_ca=client_ca,
        location=location,
        gnss_receiver=gnss_receiver,
    )
    node.ima.boot_aggregate()
    for path, digest in (measured or {}).items():
        node.ima.measure(path, digest=digest)
    endpoint = node.start_api()
    client = registrar.client()
    try:
        view = node.enrol(client, endpoint)
    finally:
        client.close()
    if location is not None:
        assert view.location_key_public is not None
    return node


def swtpm_node_policy(
    allowed: Mapping[str, bytes] | None = None, *, runtime_policy_version: int = 1, **extra: object
) -> dict[str, object]:
    """The policy document a fresh swtpm node passes: PCRs 0-7 all zeros (sha256), IMA in sha256,
    the boot aggregate of zero PCRs allowed, plus ``allowed`` path → SHA-256 digest; ``extra``
    adds fields (``location``, ``max_age_seconds``)."""
    boot_aggregate = boot_aggregate_digest({index: bytes(32) for index in range(10)})
    digests = {"boot_aggregate": ["sha256:" + boot_aggregate.hex()]}
    for path, digest in (allowed or {}).items():
        digests[path] = ["sha256:" + digest.hex()]
    return {
        "boot_pcrs": {"sha256": {str(index): "00" * 32 for index in range(8)}},
        "ima_banks": ["sha256"],
        "runtime_policy": {"version": runtime_policy_version, "digests": digests},
        **extra,
    }


def sha256_of(contents: Mapping[str, bytes]) -> dict[str, bytes]:
    """``{path: SHA-256 of content}``, for ``swtpm_node_policy(allowed=...)``."""
    return {path: hashlib.sha256(content).digest() for path, content in contents.items()}
