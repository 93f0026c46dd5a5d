"""The verifier API's app factory: settings in, a Flask app out (schema migrated, Redis reached)."""

from __future__ import annotations

import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask

from geoattest.access.guard import install_access
from geoattest.access.store import AccessStore
from geoattest.access.web import audit_blueprint
from geoattest.db import check_private_database, make_engine, migrate, session_factory
from geoattest.errors import ConfigurationError
from geoattest.http import install_api_plumbing
from geoattest.openapi import install_openapi
from geoattest.registrar_client import RegistrarClient
from geoattest.settings import Settings
from geoattest.trust_files import load_pins_file, load_trust_store_dir
from geoattest.wire import AGENT_ID_SCHEMA, POLICY_NAME_SCHEMA
from verifier.core.identity import IdentityTrust
from verifier.core.round_record import RecordOrigin
from verifier.engine.runtime import lease_defaults_of, verifier_id_of
from verifier.engine.status import StatusReader
from verifier.operations import Operations
from verifier.storage.hot_state import HotState
from verifier.storage.records import RecordStore
from verifier.storage.redis_auth import check_redis_requires_auth
from verifier.storage.sql import VerifierStore
from verifier.storage.verdicts import VerdictStore
from verifier.web.api import blueprint
from verifier.zones_file import load_zones_with_digest


def load_identity_trust(settings: Settings) -> IdentityTrust:
    """The verifier's own view of what identities to trust; ``ConfigurationError`` without an EK
    trust store or a pinned registrar key: the registrar's word alone is not enough."""
    if settings.ek_ca_dir is None:
        raise ConfigurationError(
            "the verifier needs its own EK trust store: set --ek-ca DIR (GEOATTEST_EK_CA_DIR) to "
            "the manufacturer CA certificates it accepts"
        )
    if settings.registrar_signing_key is None:
        raise ConfigurationError(
            "the verifier must pin the registrar's signing key: set GEOATTEST_REGISTRAR_SIGNING_"
            "KEY to the PEM that 'geoattest registrar signing-key' prints on the registrar"
        )
    try:
        key = serialization.load_pem_public_key(settings.registrar_signing_key.read_bytes())
    except (OSError, ValueError) as e:
        raise ConfigurationError(
            f"registrar signing key {settings.registrar_signing_key}: {e}"
        ) from e
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigurationError(f"{settings.registrar_signing_key} is not an EC public key")
    return IdentityTrust(
        ek_store=load_trust_store_dir(settings.ek_ca_dir),
        ek_pins=load_pins_file(settings.ek_pins_file),
        registrar_key=key,
    )


def create_app(settings: Settings) -> Flask:
    check_redis_requires_auth(
        settings.redis_url, allow_unauthenticated=settings.redis_allow_unauthenticated
    )
    engine = make_engine(settings.database_url)
    check_private_database(settings.database_url)
    migrate(engine)
    sessions = session_factory(engine)
    store = VerifierStore(sessions)
    hot = HotState(redis.Redis.from_url(settings.redis_url))
    registrar_key = settings.registrar_api_key
    registrar = RegistrarClient(
        settings.registrar_url,
        timeout=settings.http_timeout_seconds,
        api_key=registrar_key.get_secret_value() if registrar_key else None,
    )
    zones = load_zones_with_digest(settings)
    origin = RecordOrigin(
        verifier_id=verifier_id_of(settings),
        zones_sha256=zones.sha256 if zones is not None else None,
    )
    app = Flask("geoattest.verifier", static_folder=None)
    install_api_plumbing(app)
    install_access(app, AccessStore(sessions))
    app.extensions["geoattest.verifier_store"] = store
    app.extensions["geoattest.records"] = RecordStore(sessions)
    app.extensions["geoattest.status"] = StatusReader(store, lease_defaults_of(settings))
    app.extensions["geoattest.operations"] = Operations(
        store=store,
        verdicts=VerdictStore(engine, settings.webhook_urls),
        hot=hot,
        registrar=registrar,
        identity_trust=load_identity_trust(settings),
        origin=origin,
        zones=zones.zones if zones is not None else None,
    )
    app.extensions["geoattest.engine"] = engine
    app.register_blueprint(blueprint)
    app.register_blueprint(audit_blueprint)
    install_openapi(
        app,
        title="geoattest verifier",
        path_parameters={
            "agent_id": AGENT_ID_SCHEMA,
            "name": POLICY_NAME_SCHEMA,
            "round_id": {"type": "string", "maxLength": 128},
        },
    )
    return app
