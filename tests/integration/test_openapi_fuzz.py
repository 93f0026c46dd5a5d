"""Schemathesis fuzzes every operation of both services from their own OpenAPI documents (a
bounded number of examples each, valid and invalid, as an admin so that views are reached): no
answer is a 5xx, and every 4xx has the error shape ``{"error": {"code", "message"}}``.

The registrar is served over real HTTP; the verifier runs in-process (WSGI) against it, on a
real Redis and real SQLite files.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, note, settings
from schemathesis import Case
from schemathesis.checks import CheckContext, CheckFunction, not_a_server_error
from schemathesis.core.result import Err
from schemathesis.core.transport import Response
from schemathesis.generation.modes import GenerationMode
from schemathesis.schemas import BaseSchema

from geoattest.access.keys import Role
from geoattest.access.store import AccessStore
from geoattest.openapi import OPENAPI_PATH, _openapi_path
from tests.support.access import bearer
from tests.support.registrar_server import RunningRegistrar, running_registrar
from tests.support.service_apps import verifier_app

pytestmark = [pytest.mark.redis, pytest.mark.slow]

# Per operation, valid and invalid (schemathesis' negative mode): bounded, so the run stays short.
EXAMPLES = 40
# An event stream answers for ever (its arguments are tested in test_dashboard), and readiness
# answers 503 by design here: no worker runs beside this in-process verifier.
STREAMS = frozenset({"GET /v1/events/stream", "GET /v1/readyz"})


def error_shape(_ctx: CheckContext, response: Response, _case: Case[Any]) -> bool | None:
    """A 4xx body is exactly ``{"error": {"code": str, "message": str}}``; never a 5xx."""
    if response.status_code >= 500:
        raise AssertionError(f"{response.status_code}: {response.text[:300]}")
    if 400 <= response.status_code < 500:
        body = response.json()
        assert isinstance(body, dict), body
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"code", "message"}, body
        assert isinstance(body["error"]["code"], str), body
        assert body["error"]["code"], body
        assert isinstance(body["error"]["message"], str), body
    return None


CHECKS: list[CheckFunction] = [not_a_server_error, error_shape]


@pytest.fixture
def registrar(tmp_path: Path, trust_dir: Path) -> Iterator[RunningRegistrar]:
    with running_registrar(tmp_path / "registrar", trust_dir) as running:
        yield running


@pytest.fixture
def registrar_schema(registrar: RunningRegistrar) -> BaseSchema:
    return schemathesis.openapi.from_url(registrar.url + OPENAPI_PATH)


@pytest.fixture
def verifier_schema(
    tmp_path: Path, trust_dir: Path, redis_url: str, registrar: RunningRegistrar
) -> Iterator[BaseSchema]:
    app = verifier_app(
        tmp_path,
        trust_dir,
        redis_url,
        registrar.signing_key,
        registrar_url=registrar.url,
        registrar_api_key=registrar.reader_key,
    )
    store: AccessStore = app.extensions["geoattest.access"]
    app.config["fuzz_key"] = store.create("fuzz", Role.ADMIN, dt.datetime.now(dt.UTC))
    try:
        yield schemathesis.openapi.from_wsgi(OPENAPI_PATH, app)
    finally:
        app.extensions["geoattest.engine"].dispose()


_bounded = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,  # no example database written into the work tree
)


def _fuzz(
    schema: BaseSchema, headers: dict[str, str], *, skip: frozenset[str] = frozenset()
) -> set[str]:
    """Run every operation of ``schema`` but ``skip``; the labels of the operations fuzzed."""
    fuzzed: set[str] = set()
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # the document itself is not valid OpenAPI
        operation = result.ok()
        if operation.label in skip:
            continue

        cases = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
            GenerationMode.NEGATIVE
        )

        @given(case=cases)
        @_bounded
        def one(case: Case[Any]) -> None:
            note(f"{case.method} {case.formatted_path}")
            case.call_and_validate(headers=headers, checks=CHECKS)

        one()
        fuzzed.add(operation.label)
    return fuzzed


def test_registrar_never_answers_5xx_and_refuses_with_the_error_shape(
    registrar_schema: BaseSchema, registrar: RunningRegistrar
) -> None:
    fuzzed = _fuzz(registrar_schema, bearer(registrar.api_key))
    # schemathesis leaves out the route it loaded the document from.
    assert fuzzed == _operations(registrar.url) - {f"GET {OPENAPI_PATH}"}


def test_verifier_never_answers_5xx_and_refuses_with_the_error_shape(
    verifier_schema: BaseSchema,
) -> None:
    app = verifier_schema.app
    fuzzed = _fuzz(verifier_schema, bearer(app.config["fuzz_key"]), skip=STREAMS)
    assert fuzzed == _operations(app) - {f"GET {OPENAPI_PATH}"} - STREAMS


def _operations(service: str | Flask) -> set[str]:
    """``METHOD /path`` of every route the service has (from its URL map, or as served)."""
    if isinstance(service, str):
        document = requests.get(service + OPENAPI_PATH, timeout=10).json()
        return {f"{m.upper()} {path}" for path, ops in document["paths"].items() for m in ops}
    return {
        f"{method} {_openapi_path(rule.rule)}"
        for rule in service.url_map.iter_rules()
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
