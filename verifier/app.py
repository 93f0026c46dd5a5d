"""The verifier API's app factory: settings in, a Flask app out (schema migrated, Redis reached)."""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from sqlalchemy import Engine

from geoattest.access.guard import install_access
from geoattest.access.store import AccessStore
from geoattest.access.web import audit_blueprint
from geoattest.db import check_private_database, make_engine, migrate, session_factory
from geoattest.errors import ConfigurationError
from geoattest.health import (
    Check,
    database_check,
    health_blueprint,
    redis_check,
)
from geoattest.http import install_api_plumbing
from geoattest.openapi import install_openapi
from geoattest.registrar_client import verifier_registrar_client
from geoattest.settings import Settings
from geoattest.trust_files import load_pins_file, load_trust_store_dir
from geoattest.wire import AGENT_ID_SCHEMA, POLICY_NAME_SCHEMA
from verifier.core.identity import IdentityTrust
from verifier.core.round_record import RecordOrigin
from verifier.engine.fetch import EvidenceSource
from verifier.engine.runtime import lease_defaults_of, log_keyring, verifier_id_of
from verifier.engine.status import StatusReader
from verifier.operations import Operations
from verifier.storage.documents import DocumentKind, DocumentStore
from verifier.storage.hot_state import WORKER_TTL_SECONDS, HotState, connect_redis
from verifier.storage.log import TransparencyLog
from verifier.storage.records import RecordStore
from verifier.storage.redis_auth import check_redis_requires_auth
from verifier.storage.redis_target import RedisTarget, redis_target
from verifier.storage.sql import VerifierStore
from verifier.storage.verdicts import VerdictStore
from verifier.tokens.wiring import install_tokens
from verifier.web.api import POLICY_LIMIT_CONFIG, blueprint
from verifier.web.dashboard import install_dashboard
from verifier.web.log_api import log_blueprint
from verifier.web.metrics import install_metrics
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


def create_app(settings: Settings, *, evidence_source: EvidenceSource | None = None) -> Flask:
    """The verifier API. ``evidence_source``: where fresh rounds (tokens with a relying party's
    nonce) fetch evidence; the mTLS agent client when None."""
    target = redis_target(settings)
    check_redis_requires_auth(target, allow_unauthenticated=settings.redis_allow_unauthenticated)
    engine = make_engine(settings.database_url, background_checkpoints=True)
    check_private_database(settings.database_url)
    migrate(engine)
    sessions = session_factory(engine)
    store = VerifierStore(sessions)
    client = connect_redis(target)
    hot = HotState(client)
    registrar = verifier_registrar_client(settings)
    zones = load_zones_with_digest(settings)
    if zones is not None:  # records name it by digest: exports find it by digest
        DocumentStore(sessions).remember(DocumentKind.ZONES, zones.data, datetime.now(UTC))
    origin = RecordOrigin(
        verifier_id=verifier_id_of(settings),
        zones_sha256=zones.sha256 if zones is not None else None,
    )
    app = Flask("geoattest.verifier", static_folder=None)
    install_api_plumbing(app)
    app.config[POLICY_LIMIT_CONFIG] = settings.policy_upload_max_bytes
    install_access(app, AccessStore(sessions))
    app.extensions["geoattest.verifier_store"] = store
    records = RecordStore(sessions)
    app.extensions["geoattest.records"] = records
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
    keys = log_keyring(settings)
    keys.ensure(datetime.now(UTC))
    app.extensions["geoattest.log"] = TransparencyLog(engine, origin=settings.log_origin)
    app.extensions["geoattest.log_keys"] = keys
    app.register_blueprint(blueprint)
    app.register_blueprint(audit_blueprint)
    install_tokens(
        app,
        settings,
        engine=engine,
        store=store,
        records=records,
        client=client,
        zones=zones.zones if zones is not None else None,
        evidence_source=evidence_source,
    )
    app.register_blueprint(log_blueprint)
    app.register_blueprint(health_blueprint("verifier", _readiness_checks(target, engine)))
    install_dashboard(app, sessions, client, zones.zones if zones is not None else None)
    install_metrics(app, app.extensions["geoattest.status"], client)
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


def close_app(app: Flask) -> None:
    """Stop what ``create_app`` started beside the routes (the revocation listener's thread, the
    token ledger's and the database's connections): for processes that outlive an app."""
    app.extensions["geoattest.token_listener"].stop()
    app.extensions["geoattest.token_ledger"].close()
    app.extensions["geoattest.engine"].dispose()


def _readiness_checks(target: RedisTarget, engine: Engine) -> dict[str, Check]:
    """The verifier is ready when its database and Redis answer and a worker process ran a
    task in the last ``WORKER_TTL_SECONDS`` (workers heartbeat every watchdog tick)."""
    # Short timeouts: readyz answers quickly when Redis hangs instead of refusing.
    probe = target.client(socket_timeout=1.0, connect_timeout=1.0)
    hot = HotState(probe)

    def workers() -> str:
        seen = hot.workers_seen()
        if not seen:
            raise RuntimeError(
                f"no verifier worker seen in the last {WORKER_TTL_SECONDS:.0f} s "
                "(is 'geoattest verifier worker' running, and beat?)"
            )
        return f"{len(seen)} worker process(es) seen"

    return {"database": database_check(engine), "redis": redis_check(probe), "workers": workers}
