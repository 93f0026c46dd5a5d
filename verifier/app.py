"""The verifier API's app factory: settings in, a Flask app out (schema migrated, Redis reached)."""

from __future__ import annotations

from datetime import UTC, datetime

import redis
from flask import Flask

from geoattest.db import check_private_database, make_engine, migrate, session_factory
from geoattest.http import check_exposure, install_api_plumbing
from geoattest.registrar_client import RegistrarClient
from geoattest.settings import Settings
from verifier.core.round_record import RecordOrigin
from verifier.engine.runtime import lease_defaults_of, log_keyring, verifier_id_of
from verifier.engine.status import StatusReader
from verifier.operations import Operations
from verifier.storage.documents import DocumentKind, DocumentStore
from verifier.storage.hot_state import HotState
from verifier.storage.log import TransparencyLog
from verifier.storage.records import RecordStore
from verifier.storage.sql import VerifierStore
from verifier.storage.verdicts import VerdictStore
from verifier.web.api import blueprint
from verifier.web.log_api import log_blueprint
from verifier.zones_file import load_zones_with_digest


def create_app(settings: Settings) -> Flask:
    check_exposure(settings.verifier_host, settings.admin_token, "verifier")
    engine = make_engine(settings.database_url)
    check_private_database(settings.database_url)
    migrate(engine)
    sessions = session_factory(engine)
    store = VerifierStore(sessions)
    hot = HotState(redis.Redis.from_url(settings.redis_url))
    registrar = RegistrarClient(settings.registrar_url, timeout=settings.http_timeout_seconds)
    zones = load_zones_with_digest(settings)
    if zones is not None:  # records name it by digest: exports find it by digest
        DocumentStore(sessions).remember(DocumentKind.ZONES, zones.data, datetime.now(UTC))
    origin = RecordOrigin(
        verifier_id=verifier_id_of(settings),
        zones_sha256=zones.sha256 if zones is not None else None,
    )
    app = Flask("geoattest.verifier")
    if settings.admin_token is not None:
        app.config["GEOATTEST_ADMIN_TOKEN"] = settings.admin_token.get_secret_value()
    install_api_plumbing(app)
    app.extensions["geoattest.verifier_store"] = store
    app.extensions["geoattest.records"] = RecordStore(sessions)
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
    keys = log_keyring(settings)
    keys.ensure(datetime.now(UTC))
    app.extensions["geoattest.log"] = TransparencyLog(engine, origin=settings.log_origin)
    app.extensions["geoattest.log_keys"] = keys
    app.register_blueprint(blueprint)
    app.register_blueprint(log_blueprint)
    return app
