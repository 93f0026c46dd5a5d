"""``GET /v1/audit``: the audit log of mutating calls, for admins (both services mount it)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from geoattest.access.guard import requires
from geoattest.access.keys import Role
from geoattest.access.store import AccessStore
from geoattest.errors import MalformedRequest

audit_blueprint = Blueprint("audit", __name__, url_prefix="/v1")


@audit_blueprint.get("/audit")
@requires(Role.ADMIN)
def audit() -> Response:
    raw = request.args.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise MalformedRequest("limit must be an integer in 1..1000")
    store: AccessStore = current_app.extensions["geoattest.access"]
    entries = [
        {
            "id": e.id,
            "at": e.at.isoformat().replace("+00:00", "Z"),
            "actor": e.actor,
            "role": e.role,
            "method": e.method,
            "path": e.path,
            "remote": e.remote,
            "status": e.status,
            "request_id": e.request_id,
        }
        for e in store.audit(int(raw))
    ]
    return jsonify({"entries": entries})
