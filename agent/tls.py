"""The agent API's TLS identity and its server context (mTLS: the verifier must show a client
certificate from ``verifier_client_ca``).

The server certificate is self-signed and *pinned*: the agent sends its DER at enrolment and the
verifier accepts exactly that certificate for this agent. It is created once in
``agent_state_dir`` and reused across restarts, since a new one would need a new enrolment.
The state directory is owner-only (created 0700) and the key file 0600; both are checked
whenever the identity is loaded (``geoattest.private_files``).
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from geoattest.errors import ConfigurationError
from geoattest.private_files import check_private, ensure_private_dir
from geoattest.tls_material import (
    CertifiedKey,
    fingerprint,
    load_certified_key,
    self_signed_server_certificate,
    write_certified_key,
)

__all__ = ["ServerIdentity", "ensure_server_identity", "server_ssl_context"]

log = logging.getLogger(__name__)

CERT_FILE = "server.pem"
KEY_FILE = "server-key.pem"


@dataclass(frozen=True, slots=True)
class ServerIdentity:
    """Where the agent's TLS certificate and key are, and the certificate DER to register."""

    cert_path: Path
    key_path: Path
    certificate_der: bytes


def ensure_server_identity(
    state_dir: Path, agent_id: str, host: str, *, renew: bool = False
) -> ServerIdentity:
    """Load the server certificate from ``state_dir``, or create it (CN ``agent_id``, SAN ``host``).

    An existing certificate is reused only if it is for ``agent_id`` and ``host``. Otherwise,
    with ``renew`` (enrolment, which registers the new pin) a new one replaces it; without
    (serving) ConfigurationError, since the verifier pins the old one. Also ConfigurationError
    when the files do not load, the key is not the certificate's, or the directory or the key
    file is not owner-only.
    """
    ensure_private_dir(state_dir)
    cert_path, key_path = state_dir / CERT_FILE, state_dir / KEY_FILE
    material: CertifiedKey | None = None
    if cert_path.is_file() and key_path.is_file():
        check_private(key_path)
        try:
            material = load_certified_key(cert_path, key_path)
        except ValueError as e:
            raise ConfigurationError(f"agent TLS identity in {state_dir} unusable: {e}") from e
        problem = _identity_problem(material, agent_id, host, cert_path)
        if problem and not renew:
            raise ConfigurationError(problem)
        if problem:
            log.warning("replacing the agent TLS certificate: %s", problem)
            material = None
    if material is None:
        material = self_signed_server_certificate(agent_id, [host])
        write_certified_key(material, cert_path, key_path)
        log.info(
            "created agent TLS certificate %s (sha256 %s)",
            cert_path,
            fingerprint(material.certificate_der),
        )
    return ServerIdentity(cert_path, key_path, material.certificate_der)


def server_ssl_context(cert_path: Path, key_path: Path, client_ca: Path) -> ssl.SSLContext:
    """TLS ≥ 1.2 server context that requires a client certificate chaining to ``client_ca``.

    Raises ConfigurationError when a file is missing or does not load.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_cert_chain(cert_path, key_path)
        context.load_verify_locations(cafile=client_ca)
    except (OSError, ssl.SSLError) as e:
        raise ConfigurationError(f"cannot load agent TLS material: {e}") from e
    if not context.get_ca_certs():
        raise ConfigurationError(f"verifier client CA file {client_ca} holds no CA certificate")
    return context


def _identity_problem(
    material: CertifiedKey, agent_id: str, host: str, cert_path: Path
) -> str | None:
    cert = material.certificate
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = str(names[0].value) if names else ""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        hosts = {str(v) for v in san.get_values_for_type(x509.IPAddress)}
        hosts |= set(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        hosts = set()
    if common_name == agent_id and host in hosts:
        return None
    return (
        f"{cert_path} is for agent {common_name!r} at {sorted(hosts)}, not {agent_id!r} at "
        f"{host!r}; enrol again to register a new certificate (the verifier pins it)"
    )
