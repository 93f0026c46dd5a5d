"""Flask wiring shared by every service: JSON error bodies, request ids, body parsing
(query arguments: ``geoattest.query_args``).

One ``errorhandler(GeoattestError)`` renders ``{"error": {"code", "message"}}`` with the error's
status. HTTP errors raised by Flask itself (404 route, 405 method, 413 body) get the same shape.
A dependency that is down while a request runs (Redis refusing or timing out, the database
unreachable or locked past its timeout: ``redis.ConnectionError``/``TimeoutError``,
SQLAlchemy ``OperationalError``/``TimeoutError``) is mapped here, in one place, to a 503
``dependency_unavailable``: the request did nothing (each write is one transaction), and the
client may retry. Anything else is a bug: a logged 500 with a stable ``internal_error`` code and
no internals leaked.
"""

from __future__ import annotations

import logging
import uuid
from typing import TypeVar

import redis
import sqlalchemy.exc
from flask import Flask, Response, g, jsonify, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException

from geoattest.errors import (
    DependencyUnavailable,
    GeoattestError,
    MalformedRequest,
    PcrBankUnknown,
)
from geoattest.log import pop_context, push_context
from geoattest.strict_json import JsonValue, loads_object

log = logging.getLogger(__name__)

Model = TypeVar("Model", bound=BaseModel)
MAX_BODY_BYTES = 256 * 1024

# What a request meets when Redis or the database is down (psycopg's and sqlite3's errors arrive
# wrapped in SQLAlchemy's; a pool that cannot hand out a connection raises its TimeoutError).
DEPENDENCY_ERRORS: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.TimeoutError,
)


def install_api_plumbing(app: Flask) -> None:
    """Register request ids and the JSON error handlers on ``app``."""
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.before_request(_bind_request_id)
    app.teardown_request(_unbind_request_id)
    app.after_request(_echo_request_id)
    app.register_error_handler(GeoattestError, _geoattest_error)
    app.register_error_handler(HTTPException, _http_error)
    for dependency_error in DEPENDENCY_ERRORS:
        app.register_error_handler(dependency_error, _dependency_down)
    app.register_error_handler(Exception, _unexpected_error)


def parse_body(model: type[Model]) -> Model:
    """Read the body with the strict reader (``geoattest.strict_json``: no duplicate names, NaN,
    lone surrogates, unsafe integers or deep nesting) and validate it against ``model``; any
    problem is a 400 ``malformed_request``."""
    return validate_json(model, read_json_object())


def read_json_object() -> dict[str, JsonValue]:
    """The request body as a JSON object under the strict reader's rules."""
    if not request.is_json:
        raise MalformedRequest(
            "request body must be a JSON object (Content-Type: application/json)"
        )
    return loads_object(request.get_data(cache=True))


def validate_json(model: type[Model], body: object) -> Model:
    """Validate parsed JSON against ``model``; any problem is a 400 ``malformed_request``, an
    unknown PCR bank a 400 ``pcr_bank_unknown``."""
    try:
        return model.model_validate(body)
    except ValidationError as e:
        errors = e.errors()
        # An unknown PCR bank has a code of its own wherever it stands among the problems.
        first = next((x for x in errors if x["type"] == PcrBankUnknown.code), errors[0])
        where = ".".join(str(part) for part in first["loc"]) or "body"
        if len(where) > 120 or not (where.isascii() and where.isprintable()):
            where = ascii(where[:120])  # names the client chose: never raw into a log line
        error = PcrBankUnknown if first["type"] == PcrBankUnknown.code else MalformedRequest
        raise error(f"{where}: {first['msg']} ({e.error_count()} problem(s))") from e


def _bind_request_id() -> None:
    request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
    g.request_id = request_id[:64]
    g.log_context = push_context(request_id=g.request_id)


def _unbind_request_id(_exc: BaseException | None) -> None:
    token = g.pop("log_context", None)
    if token is not None:
        pop_context(token)


def _echo_request_id(response: Response) -> Response:
    if "request_id" in g:
        response.headers["X-Request-Id"] = g.request_id
    return response


def _geoattest_error(error: GeoattestError) -> tuple[Response, int]:
    log.warning(
        "request refused: %s",
        error.message,
        extra={"code": error.code, "path": request.path, "method": request.method},
    )
    return jsonify(error.to_dict()), error.http_status


def _http_error(error: HTTPException) -> tuple[Response, int]:
    status = error.code or 500
    code = (error.name or "http_error").lower().replace(" ", "_")
    log.info("http error %s on %s %s", status, request.method, request.path)
    return jsonify({"error": {"code": code, "message": error.description or ""}}), status


def dependency_name(error: Exception) -> str:
    """``redis`` or ``database``: which dependency ``error`` (of ``DEPENDENCY_ERRORS``) is."""
    return "redis" if isinstance(error, redis.RedisError) else "database"


def _dependency_down(error: Exception) -> tuple[Response, int]:
    which = dependency_name(error)
    log.warning(
        "%s unavailable during %s %s: %s",
        which,
        request.method,
        request.path,
        str(error).splitlines()[0][:300] if str(error) else type(error).__name__,
    )
    refused = DependencyUnavailable(f"{which} unavailable; try again later")
    return jsonify(refused.to_dict()), refused.http_status


def _unexpected_error(error: Exception) -> tuple[Response, int]:
    log.exception("unhandled error on %s %s", request.method, request.path)
    body = {"error": {"code": "internal_error", "message": "internal error; see the server log"}}
    return jsonify(body), 500
