"""The operator dashboard: static files under ``/dashboard/``, data from the ``/v1`` API.

The page and its assets are public (they hold no data); every byte of fleet data comes from
``/v1`` routes behind the roles, with the API key the operator pasted (kept in the tab's
``sessionStorage`` and sent as ``Authorization: Bearer``: no cookie, so no ambient credential a
forged cross-site request could ride on; see docs/dashboard.md). The map library is built from
the npm registry by ``deploy/build-dashboard`` into ``static/vendor/``; country outlines ship in
``static/countries.geojson``. The content security policy allows this origin only: the page can
make no request anywhere else, and runs no inline script.
"""

from __future__ import annotations

from pathlib import Path

import redis
from flask import Blueprint, Flask, Response, send_from_directory
from sqlalchemy.orm import Session, sessionmaker

from geoattest.access.guard import public
from geofence import ZoneSet
from verifier.storage.activity import ActivityReads
from verifier.storage.fleet_reads import FleetReads
from verifier.web.fleet_api import ACTIVITY, POSITIONS, READS, REDIS, ZONES, fleet_blueprint
from verifier.web.positions import PositionCache

STATIC = Path(__file__).parent / "static"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)

dashboard_blueprint = Blueprint("dashboard", __name__, url_prefix="/dashboard")


@dashboard_blueprint.get("/")
@public
def index() -> Response:
    return _secured(send_from_directory(STATIC, "index.html", max_age=0))


@dashboard_blueprint.get("/<path:name>")
@public
def asset(name: str) -> Response:
    """A static file of the dashboard (404 for anything outside ``static/``)."""
    return _secured(send_from_directory(STATIC, name, max_age=300))


def _secured(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    return response


def install_dashboard(
    app: Flask, sessions: sessionmaker[Session], client: redis.Redis, zones: ZoneSet | None
) -> None:
    """The fleet routes under ``/v1`` and the dashboard's files."""
    reads = FleetReads(sessions)
    app.extensions.update(
        {
            READS: reads,
            ACTIVITY: ActivityReads(sessions),
            POSITIONS: PositionCache(reads),
            REDIS: client,
            ZONES: zones,
        }
    )
    app.register_blueprint(fleet_blueprint)
    app.register_blueprint(dashboard_blueprint)
