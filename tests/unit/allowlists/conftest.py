"""Real vendor EK CA data (Keylime's tpm_cert_store) shared by the allowlists tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from allowlists.ek_trust import EkTrustStore
from tests.paths import vector


@pytest.fixture(scope="session")
def cert_store_dir() -> Path:
    return vector("keylime/ek_ca/tpm_cert_store")


@pytest.fixture(scope="session")
def cert_store_blobs(cert_store_dir: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(cert_store_dir.glob("*.pem"))}


@pytest.fixture(scope="session")
def vendor_store(cert_store_blobs: dict[str, bytes]) -> EkTrustStore:
    return EkTrustStore.from_blobs(cert_store_blobs)


def leaf_bytes(name: str) -> bytes:
    """A real EK leaf certificate from ``keylime/ek_ca/leaf``."""
    return vector(f"keylime/ek_ca/leaf/{name}").read_bytes()


def store_cert(name: str) -> bytes:
    """One real CA certificate file (PEM) from ``tpm_cert_store``, e.g. ``"NUVO_2111"``."""
    return vector(f"keylime/ek_ca/tpm_cert_store/{name}.pem").read_bytes()
