"""The workload API: ``POST /v1/token`` on the agent's Unix socket.

Every request must carry ``Geoattest-Workload: true`` (``400 workload_header_missing``
otherwise), as SPIFFE's workload API requires its metadata header: a request forged through a
local proxy or a confused HTTP client does not carry it. The caller is whoever the kernel says
connected, identified when the connection was accepted (``agent.workload.peer``) and checked
again before each answer; a body claiming a hash, pid or path is not read. Answers:
``WorkloadTokenView``; errors ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from agent.workload.peer import Caller
from agent.workload.tokens import WorkloadTokens
from geoattest.errors import GeoattestError, WorkloadHeaderMissing, WorkloadUnidentified
from geoattest.http import parse_body
from geoattest.wire_tokens import WORKLOAD_HEADER, WorkloadTokenRequest

__all__ = ["HASHER", "PEER_ENVIRON", "TOKENS", "blueprint"]

TOKENS = "geoattest.workload_tokens"
HASHER = "geoattest.workload_hasher"
PEER_ENVIRON = "geoattest.peer"  # the WSGI environ key the server puts the credentials under

blueprint = Blueprint("workload", __name__, url_prefix="/v1")


@blueprint.before_request
def _require_header() -> None:
    if request.headers.get(WORKLOAD_HEADER, "").strip().lower() != "true":
        raise WorkloadHeaderMissing(
            f"workload API requests need the header {WORKLOAD_HEADER}: true"
        )


@blueprint.post("/token")
def token() -> Response:
    body = parse_body(WorkloadTokenRequest)
    caller = _caller()
    caller.check_unchanged()
    tokens: WorkloadTokens = current_app.extensions[TOKENS]
    view = tokens.get(caller, body)
    caller.check_unchanged()  # exited or exec'd meanwhile: it gets nothing
    return jsonify(view.model_dump(mode="json"))


@blueprint.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


def _caller() -> Caller:
    """The caller the server identified when the connection was accepted."""
    caller = request.environ.get(PEER_ENVIRON)
    if isinstance(caller, GeoattestError):
        raise caller
    if not isinstance(caller, Caller):
        raise WorkloadUnidentified("the request did not come through the workload socket")
    return caller
