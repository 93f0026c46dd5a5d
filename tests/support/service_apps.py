"""Both operator services as in-process Flask apps on real SQLite files and a real Redis, with
the verifier pinning this registrar's signing key: for tests that walk every route or call one
app directly (``verifier_app``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask

from geoattest.settings import load_settings
from registrar.app import create_app as create_registrar
from verifier.app import create_app as create_verifier


def registrar_app(tmp_path: Path, trust_dir: Path) -> Flask:
    """The registrar on ``tmp_path/registrar.sqlite``, trusting the EK CAs of ``trust_dir``."""
    return create_registrar(
        load_settings(
            database_url=f"sqlite:///{tmp_path / 'registrar.sqlite'}",
            registrar_state_dir=tmp_path / "registrar-state",
            ek_ca_dir=trust_dir,
        )
    )


def pinned_signing_key(registrar: Flask, tmp_path: Path) -> Path:
    """The file a verifier pins ``registrar``'s signing key from (its public PEM)."""
    signing_key = tmp_path / "registrar-signing-key.pem"
    signing_key.write_text(registrar.extensions["geoattest.signer"].public_pem())
    return signing_key


def registrar_signing_key(tmp_path: Path, trust_dir: Path) -> Path:
    """A registrar made only for its signing key (its database engine disposed): the pin file."""
    registrar = registrar_app(tmp_path, trust_dir)
    try:
        return pinned_signing_key(registrar, tmp_path)
    finally:
        registrar.extensions["geoattest.engine"].dispose()


def verifier_app(
    tmp_path: Path,
    trust_dir: Path,
    redis_url: str,
    signing_key: Path,
    *,
    database_url: str | None = None,
    **extra: Any,  # noqa: ANN401  # any setting, as load_settings takes them
) -> Flask:
    """The verifier on ``database_url`` (default ``tmp_path/verifier.sqlite``) and Redis,
    pinning ``signing_key``; ``extra`` are more settings."""
    return create_verifier(
        load_settings(
            database_url=database_url or f"sqlite:///{tmp_path / 'verifier.sqlite'}",
            redis_url=redis_url,
            verifier_tls_dir=tmp_path / "verifier-tls",
            ek_ca_dir=trust_dir,
            registrar_signing_key=signing_key,
            **extra,
        )
    )


@contextmanager
def service_apps(tmp_path: Path, trust_dir: Path, redis_url: str) -> Iterator[dict[str, Flask]]:
    """``{"registrar": app, "verifier": app}``; their database engines are disposed after."""
    registrar = registrar_app(tmp_path, trust_dir)
    verifier = verifier_app(tmp_path, trust_dir, redis_url, pinned_signing_key(registrar, tmp_path))
    try:
        yield {"registrar": registrar, "verifier": verifier}
    finally:
        for app in (registrar, verifier):
            app.extensions["geoattest.engine"].dispose()
