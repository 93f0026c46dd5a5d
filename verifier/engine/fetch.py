"""Fetching evidence from agents over mutual TLS.

The verifier trusts an agent's API only through the server certificate registered at enrolment:
the TLS handshake must present exactly that certificate (SHA-256 fingerprint pinning, no CA, no
hostname games), and the verifier proves itself with its client certificate. One keep-alive
connection pool per agent endpoint (host, port, pinned certificate) keeps connections open
between rounds.

Performance: one ``SSLContext`` per client, built once with the client certificate loaded. Left to
itself urllib3 builds a context per new connection and loads the system CA store into it (unused:
trust is the pin), which cost ~10 ms of CPU per connection. A pool holds up to
``connections_per_endpoint`` connections, as many as there are round threads: agents that share an
endpoint (a gateway, the fleet simulator) are then polled over reused connections instead of a
fresh mTLS handshake for every round beyond the second.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import urllib3
from pydantic import ValidationError

from geoattest.errors import AgentUnreachable, EvidenceMalformed, LocationMissing
from geoattest.wire import EvidenceRequest, EvidenceResponse

MAX_EVIDENCE_BYTES = 16 * 1024 * 1024
DEFAULT_CONNECTIONS_PER_ENDPOINT = 2


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """The verifier's TLS client certificate and key (PEM files)."""

    cert_file: Path
    key_file: Path


class AgentClient:
    """Thread-safe: rounds for many agents run concurrently in one worker."""

    def __init__(
        self,
        identity: ClientIdentity,
        *,
        timeout: float,
        connections_per_endpoint: int = DEFAULT_CONNECTIONS_PER_ENDPOINT,
    ) -> None:
        self._identity = identity
        self._context = _client_context(identity)
        self._connections = connections_per_endpoint
        # total: a whole request, however slowly an agent drips bytes, ends within ``timeout``
        # (shorter than a round's lock, so a stale round cannot outlive its lock).
        self._timeout = urllib3.Timeout(total=timeout, connect=min(timeout, 3.0), read=timeout)
        self._pools: dict[tuple[str, int, str], urllib3.HTTPSConnectionPool] = {}
        self._lock = threading.Lock()

    def fetch_evidence(
        self, agent_url: str, tls_certificate: bytes, request: EvidenceRequest
    ) -> EvidenceResponse:
        """POST the request to ``<agent_url>/v1/evidence``.

        Raises ``AgentUnreachable`` for transport failures, timeouts, a wrong server certificate,
        5xx and unexpected statuses (a proxy's 404/429…); ``EvidenceMalformed`` when the agent
        refuses our well-formed request (400/422) or answers with something that is not evidence;
        ``LocationMissing`` when location was asked for and the agent has no fix (GNSS down or
        jammed): under a geofencing policy that is not an excuse to stay attested.
        """
        parts = urlsplit(agent_url)
        pool = self._pool(parts.hostname or "", parts.port or 443, tls_certificate)
        path = parts.path.rstrip("/") + "/v1/evidence"
        try:
            response = pool.request(
                "POST",
                path,
                body=request.model_dump_json().encode(),
                headers={"Content-Type": "application/json"},
                retries=False,
                preload_content=False,
            )
            body = response.read(MAX_EVIDENCE_BYTES + 1, decode_content=True)
            response.release_conn()
        except urllib3.exceptions.HTTPError as e:
            raise AgentUnreachable(f"agent at {agent_url} unreachable: {e}") from e
        if response.status != 200:
            raise _refusal(agent_url, response.status, body, request.include_location)
        if len(body) > MAX_EVIDENCE_BYTES:
            raise EvidenceMalformed(f"agent at {agent_url} sent over {MAX_EVIDENCE_BYTES} bytes")
        try:
            return EvidenceResponse.model_validate(json.loads(body))
        except (ValueError, ValidationError, RecursionError) as e:
            raise EvidenceMalformed(f"agent at {agent_url} sent malformed evidence: {e}") from e

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()

    def _pool(self, host: str, port: int, certificate: bytes) -> urllib3.HTTPSConnectionPool:
        fingerprint = hashlib.sha256(certificate).hexdigest()
        key = (host, port, fingerprint)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = urllib3.HTTPSConnectionPool(
                    host,
                    port,
                    maxsize=self._connections,
                    block=False,
                    timeout=self._timeout,
                    ssl_context=self._context,
                    cert_reqs="CERT_NONE",  # trust comes from the pinned fingerprint below
                    assert_hostname=False,
                    assert_fingerprint=fingerprint,
                )
                self._pools[key] = pool
            return pool


def _refusal(
    agent_url: str, status: int, body: bytes, asked_location: bool
) -> AgentUnreachable | EvidenceMalformed | LocationMissing:
    code = _error_code(body)
    what = f"agent at {agent_url} answered {status} ({code or 'no error code'})"
    if asked_location and code == "gnss_unavailable":
        return LocationMissing(f"{what}: no location fix to sign")
    if status in (400, 422):
        return EvidenceMalformed(f"{what} to a well-formed evidence request: {body[:200]!r}")
    return AgentUnreachable(what)


def _error_code(body: bytes) -> str | None:
    try:
        error = json.loads(body[:4096])["error"]
        return str(error["code"])
    except (ValueError, KeyError, TypeError, RecursionError):
        return None


def _client_context(identity: ClientIdentity) -> ssl.SSLContext:
    """TLS 1.2+ with the verifier's client certificate; no CA store and no hostname check: the
    server is trusted only through the pinned fingerprint each pool asserts."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(identity.cert_file, identity.key_file)
    return context
