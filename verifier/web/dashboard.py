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

import mimetypes
from pathlib import Path

import redis
from flask import Blueprint, Flask, Response
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import NotFound
from werkzeug.security import safe_join

from geoattest.access.guard import public
from geoattest.openapi import documented
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
@documented("The dashboard page (it asks for an API key and reads /v1 with it)")
def index() -> Response:
    return _secured(_static("index.html", max_age=0))


@dashboard_blueprint.get("/<path:asset>")
@public
@documented(
    "A static file of the dashboard",
    path={"asset": {"type": "string", "minLength": 1, "maxLength": 200}},
)
def asset(asset: str) -> Response:
    """A static file of the dashboard (404 for anything outside ``static/``)."""
    return _secured(_static(asset, max_age=300))


def _static(name: str, *, max_age: int) -> Response:
    """A file under ``static/``, read whole (small files: no open file outlives the request);
    ``NotFound`` for anything else (``safe_join`` refuses ``..`` and absolute paths)."""
    found = safe_join(str(STATIC), name)
    try:
        data = Path(found).read_bytes() if found is not None and len(name) <= 200 else None
    except OSError:  # a directory, a missing file, a name the file system cannot hold
        data = None
    if data is None:
        raise NotFound()
    response = Response(data, mimetype=mimetypes.guess_type(name)[0])
    response.cache_control.max_age = max_age
    response.cache_control.public = max_age > 0
    return response


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
