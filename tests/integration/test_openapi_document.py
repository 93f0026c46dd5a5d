"""Each service serves an OpenAPI 3.1 document generated from its URL map and wire models:
public, complete (a route without ``@documented`` fails here), and saying what access needs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from geoattest.access.guard import PUBLIC, access_of
from geoattest.openapi import OPENAPI_PATH, operation_of
from tests.support.service_apps import service_apps

pytestmark = pytest.mark.redis


@pytest.fixture
def apps(tmp_path: Path, trust_dir: Path, redis_url: str) -> Iterator[dict[str, Flask]]:
    with service_apps(tmp_path, trust_dir, redis_url) as both:
        yield both


@pytest.mark.parametrize("service", ["registrar", "verifier"])
def test_the_document_is_public_and_lists_every_route_as_declared(
    apps: dict[str, Flask], service: str
) -> None:
    app = apps[service]
    answer = app.test_client().get(OPENAPI_PATH)  # no API key
    assert answer.status_code == 200
    document = answer.json
    assert isinstance(document, dict)
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] == f"geoattest {service}"
    schemas = document["components"]["schemas"]
    listed = 0
    for rule in app.url_map.iter_rules():
        operation = operation_of(app, rule.endpoint)
        assert operation is not None, f"{service} {rule.rule} has no @documented operation"
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            entry = document["paths"][path][method.lower()]
            assert entry["summary"] == operation.summary
            assert {p["name"] for p in entry.get("parameters", []) if p["in"] == "path"} == set(
                rule.arguments
            )
            access = access_of(app, rule.endpoint)
            if access == PUBLIC:
                assert entry["security"] == []
            else:
                assert entry["security"] == [{"apiKey": []}]
                assert entry["x-geoattest-role"] == str(access)
            if operation.body is not None:
                ref = entry["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                assert ref.rsplit("/", 1)[1] in schemas
            else:
                assert "requestBody" not in entry
            assert entry["responses"]["4XX"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorBody"
            }
            listed += 1
    assert listed == sum(len(ops) for ops in document["paths"].values())


def test_the_documented_bounds_are_the_enforced_bounds(apps: dict[str, Flask]) -> None:
    document = apps["verifier"].test_client().get(OPENAPI_PATH).json
    assert document is not None
    rounds = document["paths"]["/v1/agents/{agent_id}/rounds"]["get"]
    limit = next(p for p in rounds["parameters"] if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 1000)
    agent_id = next(p for p in rounds["parameters"] if p["name"] == "agent_id")
    assert agent_id["schema"]["maxLength"] == 64
    policy = document["components"]["schemas"]["PolicyDocument"]
    assert policy["additionalProperties"] is False  # operator input is strict
