"""The agent's TLS identity: created once (key 0600), reused, never silently replaced when
serving; the server context demands a client certificate."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509

from agent.tls import ensure_server_identity, server_ssl_context
from geoattest.errors import ConfigurationError
from geoattest.tls_material import ensure_verifier_client_tls


def test_identity_is_created_once_and_reused(tmp_path: Path) -> None:
    first = ensure_server_identity(tmp_path, "node-1", "10.0.0.5")
    assert stat.S_IMODE(first.key_path.stat().st_mode) == 0o600
    cert = x509.load_der_x509_certificate(first.certificate_der)
    assert cert.subject.rfc4514_string() == "CN=node-1"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    assert ensure_server_identity(tmp_path, "node-1", "10.0.0.5") == first


def test_dns_host_goes_in_a_dns_san(tmp_path: Path) -> None:
    identity = ensure_server_identity(tmp_path, "node-1", "edge-1.example")
    cert = x509.load_der_x509_certificate(identity.certificate_der)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["edge-1.example"]


def test_another_agent_id_is_refused_when_serving_and_renewed_at_enrolment(tmp_path: Path) -> None:
    old = ensure_server_identity(tmp_path, "node-1", "127.0.0.1")
    with pytest.raises(ConfigurationError, match="enrol again"):
        ensure_server_identity(tmp_path, "node-2", "127.0.0.1")
    new = ensure_server_identity(tmp_path, "node-2", "127.0.0.1", renew=True)
    assert new.certificate_der != old.certificate_der


def test_server_context_requires_client_certificates(tmp_path: Path) -> None:
    identity = ensure_server_identity(tmp_path / "agent", "node-1", "127.0.0.1")
    client = ensure_verifier_client_tls(tmp_path / "verifier")
    context = server_ssl_context(identity.cert_path, identity.key_path, client.ca_cert)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert ensure_verifier_client_tls(tmp_path / "verifier") == client  # kept, not remade


def test_client_ca_without_certificates_is_refused(tmp_path: Path) -> None:
    identity = ensure_server_identity(tmp_path, "node-1", "127.0.0.1")
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    with pytest.raises(ConfigurationError):
        server_ssl_context(identity.cert_path, identity.key_path, empty)


def test_state_dir_is_created_owner_only(tmp_path: Path) -> None:
    state_dir = tmp_path / "var" / "agent"
    ensure_server_identity(state_dir, "node-1", "127.0.0.1")
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(state_dir.parent.stat().st_mode) == 0o700


@pytest.mark.parametrize(("name", "mode"), [(".", 0o755), ("server-key.pem", 0o644)])
def test_state_others_can_read_is_refused_at_start(tmp_path: Path, name: str, mode: int) -> None:
    """A local user who can read the agent's TLS key can impersonate its evidence API."""
    state_dir = tmp_path / "agent"
    ensure_server_identity(state_dir, "node-1", "127.0.0.1")
    (state_dir / name).chmod(mode)
    with pytest.raises(ConfigurationError, match=f"has mode {mode:04o}"):
        ensure_server_identity(state_dir, "node-1", "127.0.0.1")
