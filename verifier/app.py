"""The verifier API's app factory: settings in, a Flask app out (schema migrated, Redis reached)."""

from __future__ import annotations

import redis
from flask import Flask

from geoattest.db import check_private_database, make_engine, migrate, session_factory
from geoattest.http import check_exposure, install_api_plumbing
from geoattest.registrar_client import RegistrarClient
from geoattest.settings import Settings
from verifier.core.round_record import RecordOrigin
from verifier.engine.fetch import EvidenceSource
from verifier.engine.runtime import lease_defaults_of, verifier_id_of
from verifier.engine.status import StatusReader
from verifier.operations import Operations
from verifier.storage.hot_state import HotState
from verifier.storage.records import RecordStore
from verifier.storage.sql import VerifierStore
from verifier.storage.verdicts import VerdictStore
from verifier.tokens.wiring import install_tokens
from verifier.web.api import blueprint
from verifier.zones_file import load_zones_with_digest


def create_app(settings: Settings, *, evidence_source: EvidenceSource | None = None) -> Flask:
    """The verifier API. ``evidence_source``: where fresh rounds (tokens with a relying party's
    nonce) fetch evidence; the mTLS agent client when None."""
    check_exposure(settings.verifier_host, settings.admin_token, "verifier")
    engine = make_engine(settings.database_url)
    check_private_database(settings.database_url)
    migrate(engine)
    sessions = session_factory(engine)
    store = VerifierStore(sessions)
    client = redis.Redis.from_url(settings.redis_url)
    hot = HotState(client)
    registrar = RegistrarClient(settings.registrar_url, timeout=settings.http_timeout_seconds)
    zones = load_zones_with_digest(settings)
    origin = RecordOrigin(
        verifier_id=verifier_id_of(settings),
        zones_sha256=zones.sha256 if zones is not None else None,
    )
    app = Flask("geoattest.verifier")
    if settings.admin_token is not None:
        app.config["GEOATTEST_ADMIN_TOKEN"] = settings.admin_token.get_secret_value()
    install_api_plumbing(app)
    app.extensions["geoattest.verifier_store"] = store
    records = RecordStore(sessions)
    app.extensions["geoattest.records"] = records
    app.extensions["geoattest.status"] = StatusReader(store, lease_defaults_of(settings))
    app.extensions["geoattest.operations"] = Operations(
        store=store,
        verdicts=VerdictStore(engine, settings.webhook_urls),
        hot=hot,
        registrar=registrar,
        origin=origin,
        zones=zones.zones if zones is not None else None,
    )
    app.extensions["geoattest.engine"] = engine
    app.register_blueprint(blueprint)
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
    return app
