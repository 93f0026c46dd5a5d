"""The verifier API's app factory: settings in, a Flask app out (schema migrated, Redis reached)."""

from __future__ import annotations

import redis
from flask import Flask

from geoattest.db import make_engine, migrate, session_factory
from geoattest.http import check_exposure, install_api_plumbing
from geoattest.registrar_client import RegistrarClient
from geoattest.settings import Settings
from verifier.operations import Operations
from verifier.storage.hot_state import HotState
from verifier.storage.sql import VerifierStore
from verifier.web.api import blueprint
from verifier.zones_file import load_zones_file


def create_app(settings: Settings) -> Flask:
    check_exposure(settings.verifier_host, settings.admin_token, "verifier")
    engine = make_engine(settings.database_url)
    migrate(engine)
    store = VerifierStore(session_factory(engine))
    hot = HotState(redis.Redis.from_url(settings.redis_url))
    registrar = RegistrarClient(settings.registrar_url, timeout=settings.http_timeout_seconds)
    app = Flask("geoattest.verifier")
    if settings.admin_token is not None:
        app.config["GEOATTEST_ADMIN_TOKEN"] = settings.admin_token.get_secret_value()
    install_api_plumbing(app)
    app.extensions["geoattest.verifier_store"] = store
    app.extensions["geoattest.operations"] = Operations(
        store=store, hot=hot, registrar=registrar, zones=load_zones_file(settings)
    )
    app.extensions["geoattest.engine"] = engine
    app.register_blueprint(blueprint)
    return app
