"""Input without one meaning, on every route of both services (walked from their URL maps, so
a new route is covered): each hostile body and query argument is a 400 with the error shape,
never a 500 and never stored; agent ids on every verifier route follow the one id rule."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from geoattest.access.keys import Role
from geoattest.access.store import AccessStore
from geoattest.openapi import operation_of
from tests.support.service_apps import service_apps

pytestmark = pytest.mark.redis

JSON = "application/json"
SAMPLE = {"agent_id": "edge-1", "name": "p", "action": "pause", "round_id": "r1"}
# Each would reach a view with a value other than the one sent (or crash the parser).
HOSTILE_BODIES = {
    "duplicate names": b'{"policy": "p", "policy": "q", "proof": "00", "proof": "11"}',
    "nested duplicate": b'{"boot_pcrs": {"sha256": {"0": "aa", "0": "bb"}}}',
    "NaN": b'{"policy": "p", "max_age_seconds": NaN}',
    "Infinity": b'{"policy": "p", "max_age_seconds": Infinity}',
    "overflow": b'{"policy": "p", "max_age_seconds": 1e400}',
    "unsafe integer": b'{"policy": "p", "n": 9007199254740993}',
    "lone surrogate": b'{"policy": "\\ud800", "agent_id": "\\udfff"}',
    "surrogate name": b'{"\\ud800": 1}',
    "not UTF-8": b'{"policy": "\xe9"}',
    "deep nesting": b'{"a": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
    "very deep nesting": b"[" * 200_000,
    "not an object": b'["policy", "p"]',
}


@pytest.fixture
def apps(tmp_path: Path, trust_dir: Path, redis_url: str) -> Iterator[dict[str, Flask]]:
    with service_apps(tmp_path, trust_dir, redis_url) as both:
        yield both


def _admin(app: Flask) -> dict[str, str]:
    store: AccessStore = app.extensions["geoattest.access"]

    return {
        "Authorization": f"Bearer {store.create('hostile', Role.ADMIN, dt.datetime.now(dt.UTC))}"
    }


def _routes(app: Flask, methods: set[str]) -> Iterator[tuple[str, str]]:
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) & methods):
            path = rule.rule
            for name, value in SAMPLE.items():
                path = path.replace(f"<{name}>", value)
            yield method, path


def _refused(
    client: FlaskClient, method: str, path: str, body: bytes | None, headers: dict[str, str]
) -> str:
    """Call ``path``; assert a 400 with exactly the error shape; its code."""
    answer = client.open(path, method=method, data=body, headers=headers, content_type=JSON)
    assert answer.status_code == 400, (method, path, answer.status_code, answer.json)
    body = answer.json
    assert isinstance(body, dict), (method, path)
    assert set(body) == {"error"}
    assert isinstance(body["error"]["code"], str)
    assert isinstance(body["error"]["message"], str)
    return str(body["error"]["code"])


def test_hostile_bodies_are_refused_on_every_route_and_nothing_is_stored(
    apps: dict[str, Flask],
) -> None:
    walked = 0
    for service, app in apps.items():
        client, admin = app.test_client(), _admin(app)
        for method, path in _routes(app, {"POST", "PUT"}):
            endpoint = app.url_map.bind("").match(path, method=method)[0]
            operation = operation_of(app, endpoint)
            assert operation is not None, (service, method, path)
            for name, body in HOSTILE_BODIES.items():
                if operation.body is None:  # the view reads no body: it must not crash on one
                    answer = client.open(
                        path, method=method, data=body, headers=admin, content_type=JSON
                    )
                    assert answer.status_code < 500, (service, method, path, name)
                    continue
                code = _refused(client, method, path, body, admin)
                assert code in ("malformed_request", "agent_id_invalid"), (path, name, code)
                walked += 1
        for listing, field in (("/v1/agents", "agents"), ("/v1/policies", "policies")):
            if app.url_map.bind("").test(listing, "GET"):
                answer = client.get(listing, headers=admin)
                if answer.status_code == 200 and answer.json is not None and field in answer.json:
                    assert answer.json[field] == [], (service, listing)
    # Enrol, activate, location key; policy, add agent, set policy: each with every body.
    assert walked >= 6 * len(HOSTILE_BODIES)


BAD_PATH_IDS = ["edge-1%0A", "..", ".hidden", "-rf", "a" * 65, "%C3%A9dge", "%FF", "a%20b", "a%00"]
BAD_POLICY_NAMES = ["p%0A", "a" * 65, "%C3%A9", "%F3%82%92%82%26", "a%20b", "a%00"]


@pytest.mark.parametrize("service", ["registrar", "verifier"])
def test_bad_path_values_are_refused_on_every_route_that_takes_them(
    apps: dict[str, Flask], service: str
) -> None:
    app = apps[service]
    client, admin = app.test_client(), _admin(app)
    checked = 0
    for rule in app.url_map.iter_rules():
        for argument, bad_values, code in (
            ("agent_id", BAD_PATH_IDS, "agent_id_invalid"),
            ("name", BAD_POLICY_NAMES, "malformed_request"),
        ):
            if argument not in rule.arguments:
                continue
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                for bad in bad_values:
                    path = rule.rule.replace(f"<{argument}>", bad)
                    for name, value in SAMPLE.items():
                        path = path.replace(f"<{name}>", value)
                    body = b'{"policy": "p"}' if method in ("POST", "PUT") else None
                    assert _refused(client, method, path, body, admin) == code, (path, method)
                    checked += 1
    assert checked >= (3 if service == "registrar" else 9) * 6


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/v1/agents/edge-1/rounds", "limit=0"),
        ("/v1/agents/edge-1/rounds", "limit=1001"),
        ("/v1/agents/edge-1/rounds", "limit=%C2%B2"),
        ("/v1/agents/edge-1/rounds", "after_seq=-1"),
        ("/v1/agents/edge-1/rounds", "after_seq=" + "9" * 30),
        ("/v1/agents/edge-1/rounds", "from=nan"),
        ("/v1/agents/edge-1/rounds", "to=0001-01-01T00:00:00%2B01:00"),
        ("/v1/audit", "limit=nan"),
        ("/v1/audit", "limit=100000"),
    ],
)
def test_query_arguments_out_of_range_are_400(
    apps: dict[str, Flask], path: str, query: str
) -> None:
    app = apps["verifier"]
    assert _refused(app.test_client(), "GET", f"{path}?{query}", None, _admin(app)) == (
        "malformed_request"
    )


@pytest.mark.parametrize("max_age", [1e300, 1e12, 0, -5, 7 * 24 * 3600 + 1])
def test_a_lease_no_datetime_can_hold_is_refused_not_stored(
    apps: dict[str, Flask], max_age: float
) -> None:
    app = apps["verifier"]
    client, admin = app.test_client(), _admin(app)
    answer = client.put("/v1/policies/p", json={"max_age_seconds": max_age}, headers=admin)
    assert answer.status_code == 400, answer.json
    assert answer.json is not None
    assert answer.json["error"]["code"] == "policy_invalid"
    assert client.get("/v1/policies/p", headers=admin).status_code == 404
    week = client.put("/v1/policies/p", json={"max_age_seconds": 7 * 24 * 3600}, headers=admin)
    assert week.status_code == 200, week.json
