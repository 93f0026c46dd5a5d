"""Both operator services as in-process Flask apps on real SQLite files and a real Redis, with
the verifier pinning this registrar's signing key: for tests that walk every route."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import Flask

from geoattest.settings import load_settings
from registrar.app import create_app as create_registrar
from verifier.app import create_app as create_verifier


@contextmanager
def service_apps(tmp_path: Path, trust_dir: Path, redis_url: str) -> Iterator[dict[str, Flask]]:
    """``{"registrar": app, "verifier": app}``; their database engines are disposed after."""
    registrar = create_registrar(
        load_settings(
            database_url=f"sqlite:///{tmp_path / 'registrar.sqlite'}",
            registrar_state_dir=tmp_path / "registrar-state",
            ek_ca_dir=trust_dir,
        )
    )
    signing_key = tmp_path / "registrar-signing-key.pem"
    signing_key.write_text(registrar.extensions["geoattest.signer"].public_pem())
    verifier = create_verifier(
        load_settings(
            database_url=f"sqlite:///{tmp_path / 'verifier.sqlite'}",
            redis_url=redis_url,
            verifier_tls_dir=tmp_path / "verifier-tls",
            ek_ca_dir=trust_dir,
            registrar_signing_key=signing_key,
        )
    )
    try:
        yield {"registrar": registrar, "verifier": verifier}
    finally:
        for app in (registrar, verifier):
            app.extensions["geoattest.engine"].dispose()
