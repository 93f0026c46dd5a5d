"""The registrar's app factory: settings in, a Flask app out (trust store loaded, state checked
owner-only, DB migrated)."""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import Flask

from geoattest.access.guard import install_access
from geoattest.access.store import AccessStore
from geoattest.access.web import audit_blueprint
from geoattest.db import check_private_database, make_engine, migrate, session_factory
from geoattest.errors import ConfigurationError
from geoattest.health import database_check, health_blueprint
from geoattest.http import install_api_plumbing
from geoattest.openapi import install_openapi
from geoattest.settings import Settings
from geoattest.trust_files import load_pins_file, load_trust_store_dir
from geoattest.wire import AGENT_ID_SCHEMA
from registrar.api import blueprint
from registrar.proof_check import ProofChecker
from registrar.registry import Registry, TrustPolicy
from registrar.signing import RegistrarSigner

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> Flask:
    """Build the registrar. Raises ``ConfigurationError`` when no EK trust store is configured,
    or when the state directory, its enrolment key or the SQLite database file is not owner-only
    (``geoattest.private_files``; both are created owner-only on first start)."""
    trust = load_trust_policy(settings)
    checker = ProofChecker.load(settings.registrar_state_dir)
    # creates a missing SQLite file 0600
    engine = make_engine(settings.database_url, background_checkpoints=True)
    check_private_database(settings.database_url)  # and refuses an existing one left wider
    migrate(engine)
    app = Flask("geoattest.registrar", static_folder=None)
    install_api_plumbing(app)
    install_access(app, AccessStore(session_factory(engine)))
    app.extensions["geoattest.registry"] = Registry(session_factory(engine), trust, checker)
    app.extensions["geoattest.signer"] = RegistrarSigner.load(settings.registrar_state_dir)
    app.extensions["geoattest.engine"] = engine
    app.register_blueprint(blueprint)
    app.register_blueprint(audit_blueprint)
    app.register_blueprint(health_blueprint("registrar", {"database": database_check(engine)}))
    install_openapi(
        app,
        title="geoattest registrar",
        path_parameters={"agent_id": AGENT_ID_SCHEMA},
    )
    return app


def load_trust_policy(settings: Settings) -> TrustPolicy:
    if settings.ek_ca_dir is None:
        raise ConfigurationError(
            "no EK trust store: set --ek-ca DIR (GEOATTEST_EK_CA_DIR) to a directory of "
            "manufacturer CA certificates"
        )
    store = load_trust_store_dir(settings.ek_ca_dir)
    pins = load_pins_file(settings.ek_pins_file)
    log.info(
        "EK trust store loaded: %d CA certificate(s) from %s; pins: %s",
        len(store),
        settings.ek_ca_dir,
        "none" if pins is None else settings.ek_pins_file,
    )
    return TrustPolicy(
        store=store, pins=pins, challenge_ttl=timedelta(seconds=settings.challenge_ttl_seconds)
    )
