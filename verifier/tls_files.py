"""Where the verifier keeps its mTLS material (made by ``geoattest verifier init-tls``)."""

from __future__ import annotations

from pathlib import Path

from geoattest.errors import ConfigurationError
from geoattest.private_files import check_private

CLIENT_CERT = "client.pem"
CLIENT_KEY = "client-key.pem"
CLIENT_CA = "client-ca.pem"  # agents trust this CA for verifier client certificates


def verifier_client_files(tls_dir: Path) -> tuple[Path, Path]:
    """(certificate, key) of the verifier's TLS client identity; ``ConfigurationError`` if none."""
    cert, key = tls_dir / CLIENT_CERT, tls_dir / CLIENT_KEY
    for path in (cert, key):
        if not path.is_file():
            raise ConfigurationError(
                f"verifier TLS client file missing: {path} (create it with 'geoattest verifier "
                "init-tls'; agents must trust its CA)"
            )
    check_private(tls_dir)  # whoever reads the client key can speak to agents as the verifier
    check_private(key)
    return cert, key
