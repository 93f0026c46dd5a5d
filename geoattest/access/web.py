"""``GET /v1/audit``: the audit log of mutating calls, for admins (both services mount it)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from geoattest.access.guard import requires
from geoattest.access.keys import Role
from geoattest.access.store import AccessStore
from geoattest.openapi import documented
from geoattest.query_args import IntArg

audit_blueprint = Blueprint("audit", __name__, url_prefix="/v1")
LIMIT = IntArg(name="limit", default=100, low=1, high=1000)


@audit_blueprint.get("/audit")
@requires(Role.ADMIN)
@documented("The audit log of mutating calls, newest first", query=(LIMIT,))
def audit() -> Response:
    limit = LIMIT.read()
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
        for e in store.audit(limit)
    ]
    return jsonify({"entries": entries})
