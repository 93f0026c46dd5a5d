"""Each service's OpenAPI 3.1 document, generated from its URL map and the wire models.

Views declare their operation next to their access rule::

    @blueprint.put("/policies/<name>")
    @requires(Role.ADMIN)
    @documented("Create or replace a policy", body=PolicyDocument, answer=PolicyView)
    def put_policy(name: str) -> Response: ...

``openapi_document`` walks the app's URL map: every route becomes an operation, its request
body and answer are the pydantic models' JSON Schemas (draft 2020-12, which OpenAPI 3.1 uses
as is), its query arguments are the same ``QueryArg`` objects the view reads, its security is
what ``geoattest.access.guard`` says. Nothing is kept by hand beside the code, and a route that
declares no operation is still listed (as undocumented) so that a test can refuse it.
``install_openapi`` serves the document at ``GET /v1/openapi.json`` (public: it describes the
API, it holds no data).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import TypeVar

from flask import Flask, Response, current_app, jsonify
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from geoattest.access.guard import PUBLIC, access_of, public
from geoattest.query_args import QueryArg

__all__ = [
    "OPENAPI_PATH",
    "ErrorBody",
    "Operation",
    "documented",
    "install_openapi",
    "openapi_document",
    "operation_of",
]

OPENAPI_PATH = "/v1/openapi.json"
OPERATION_ATTRIBUTE = "geoattest_operation"
_SCHEMAS = "#/components/schemas/{model}"
View = TypeVar("View", bound=Callable[..., object])
_Refs = dict[tuple[object, JsonSchemaMode], dict[str, object]]  # (model, mode) → its $ref


class ErrorDetail(BaseModel):
    code: str  # stable, snake_case (geoattest.errors)
    message: str


class ErrorBody(BaseModel):
    """Every 4xx answer of every service: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    """What a view takes and answers; the URL map and the access rule supply the rest."""

    summary: str
    body: type[BaseModel] | None = None
    answer: type[BaseModel] | None = None  # None: a JSON object not described by a model
    status: int = 200  # the success status (204: no body)
    query: tuple[QueryArg, ...] = ()
    path: Mapping[str, Mapping[str, object]] | None = None  # schemas of path arguments


def documented(
    summary: str,
    *,
    body: type[BaseModel] | None = None,
    answer: type[BaseModel] | None = None,
    status: int = 200,
    query: tuple[QueryArg, ...] = (),
    path: Mapping[str, Mapping[str, object]] | None = None,
) -> Callable[[View], View]:
    """Declare a view's operation for the OpenAPI document."""
    operation = Operation(
        summary=summary, body=body, answer=answer, status=status, query=query, path=path
    )

    def mark(view: View) -> View:
        setattr(view, OPERATION_ATTRIBUTE, operation)
        return view

    return mark


def operation_of(app: Flask, endpoint: str) -> Operation | None:
    """The operation an endpoint declared, or ``None``."""
    found: Operation | None = getattr(app.view_functions.get(endpoint), OPERATION_ATTRIBUTE, None)
    return found


def install_openapi(
    app: Flask,
    *,
    title: str,
    path_parameters: Mapping[str, Mapping[str, object]],
) -> None:
    """Serve ``openapi_document(app, …)`` at ``OPENAPI_PATH``; built once, on first request,
    with the installed distribution's version."""
    try:
        version = metadata.version("geoattest")
    except metadata.PackageNotFoundError:  # running from a tree that was never installed
        version = "0+unknown"

    @public
    @documented("This OpenAPI 3.1 document")
    def openapi() -> Response:
        cache: dict[str, object] = current_app.extensions.setdefault("geoattest.openapi", {})
        if "document" not in cache:
            cache["document"] = openapi_document(
                current_app, title=title, version=version, path_parameters=path_parameters
            )
        return jsonify(cache["document"])

    app.add_url_rule(OPENAPI_PATH, endpoint="openapi", view_func=openapi, methods=["GET"])


def openapi_document(
    app: Flask,
    *,
    title: str,
    version: str,
    path_parameters: Mapping[str, Mapping[str, object]],
) -> dict[str, object]:
    """The OpenAPI 3.1 document of every route of ``app``.

    ``path_parameters`` gives the schema of each path argument by name (``agent_id`` → the
    agent id pattern); an operation's own ``path`` overrides it. Raises ``ValueError`` for a
    path argument without a schema (a new route must say what it takes).
    """
    operations = [
        (rule, method, operation_of(app, rule.endpoint))
        for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule)
        if rule.endpoint != "static"
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
    ]
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization")]
    for _rule, _method, op in operations:
        if op is not None and op.body is not None:
            models.append((op.body, "validation"))
        if op is not None and op.answer is not None:
            models.append((op.answer, "serialization"))
    generated, definitions = models_json_schema(list(dict.fromkeys(models)), ref_template=_SCHEMAS)
    refs: _Refs = {(model, mode): schema for (model, mode), schema in generated.items()}
    paths: dict[str, dict[str, object]] = {}
    for rule, method, op in operations:
        access = access_of(app, rule.endpoint)
        path = _openapi_path(rule.rule)
        parameters = [_path_parameter(name, op, path_parameters) for name in sorted(rule.arguments)]
        entry: dict[str, object] = {
            "operationId": f"{method.lower()}_{rule.endpoint.replace('.', '_')}",
            "summary": op.summary if op else "undocumented",
            "responses": _responses(op, refs, has_body=op is not None and op.body is not None),
        }
        if op is not None:
            parameters += [arg.openapi_parameter() for arg in op.query]
        if parameters:
            entry["parameters"] = parameters
        if op is not None and op.body is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[(op.body, "validation")]}},
            }
        if access == PUBLIC:
            entry["security"] = []
        elif access is not None:
            entry["security"] = [{"apiKey": []}]
            entry["x-geoattest-role"] = str(access)
        paths.setdefault(path, {})[method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (geoattest api-keys create --role R --name N)",
                }
            },
        },
    }


def _openapi_path(rule: str) -> str:
    """``/agents/<agent_id>`` → ``/agents/{agent_id}`` (converters dropped: ``<int:n>``)."""
    out, rest = "", rule
    while "<" in rest:
        before, _, after = rest.partition("<")
        inner, _, rest = after.partition(">")
        out += before + "{" + inner.rpartition(":")[2] + "}"
    return out + rest


def _path_parameter(
    name: str, op: Operation | None, defaults: Mapping[str, Mapping[str, object]]
) -> dict[str, object]:
    schema = (op.path or {}).get(name) if op else None
    if schema is None:
        schema = defaults.get(name)
    if schema is None:
        raise ValueError(f"path argument <{name}> has no schema (path_parameters or @documented)")
    return {"name": name, "in": "path", "required": True, "schema": dict(schema)}


def _responses(
    op: Operation | None,
    refs: _Refs,
    *,
    has_body: bool,
) -> dict[str, object]:
    error = {
        "description": "refused: {error: {code, message}} with a stable code",
        "content": {"application/json": {"schema": refs[(ErrorBody, "serialization")]}},
    }
    status = op.status if op else 200
    success: dict[str, object] = {"description": "done"}
    if status != 204:
        schema: Mapping[str, object] = (
            refs[(op.answer, "serialization")] if op and op.answer else {"type": "object"}
        )
        success["content"] = {"application/json": {"schema": schema}}
    kinds: dict[str, object] = {str(status): success, "4XX": error}
    if has_body:
        kinds["413"] = {**error, "description": "body larger than the service accepts"}
    return kinds
