"""Every route of both services, from their apps' URL maps: refused without an API key (401),
with a malformed, unknown or revoked key (401), and with a role below the one it declares (403).
A route that declares no access rule fails this test, so a new route cannot be forgotten open.
Mutating calls land in the audit log; keys in settings must be whole keys."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from pydantic import ValidationError

from geoattest.access.guard import PUBLIC, access_of
from geoattest.access.keys import Role
from geoattest.access.store import AccessStore
from geoattest.db import make_engine, session_factory
from geoattest.settings import load_settings
from tests.support.service_apps import service_apps

pytestmark = pytest.mark.redis

# The only routes anyone may call without a key, and why.
PUBLIC_ROUTES = {
    ("registrar", "POST", "/v1/agents"),  # enrolment: the TPM proves the caller
    ("registrar", "POST", "/v1/agents/<agent_id>/activate"),
    ("registrar", "PUT", "/v1/agents/<agent_id>/location-key"),  # certified by the enrolled AK
    ("registrar", "POST", "/v1/agents/<agent_id>/location-key/challenge"),  # a nonce, no secret
    ("registrar", "GET", "/v1/healthz"),  # health: no data, and monitors hold no keys
    ("registrar", "GET", "/v1/readyz"),
    ("registrar", "GET", "/v1/signing-key"),  # a public key (pinned out of band)
    ("registrar", "GET", "/v1/openapi.json"),  # describes the API, holds no data
    ("verifier", "GET", "/v1/healthz"),
    ("verifier", "GET", "/.well-known/jwks.json"),  # token keys: anyone verifies tokens
    ("verifier", "GET", "/v1/tokens/status"),  # signed revocation status
    ("verifier", "POST", "/v1/token-sessions/challenge"),  # agents: the TPM session proves them
    ("verifier", "POST", "/v1/token-sessions"),
    ("verifier", "POST", "/v1/tokens"),  # signed by the TPM-bound session key
    ("verifier", "GET", "/v1/log/checkpoint"),  # the transparency log: hashes and signatures
    ("verifier", "GET", "/v1/log/checkpoints/<int:size>"),
    ("verifier", "GET", "/v1/log/proof/inclusion"),
    ("verifier", "GET", "/v1/log/proof/consistency"),
    ("verifier", "GET", "/v1/log/keys"),
    ("verifier", "GET", "/v1/readyz"),
    # The dashboard's page and static files hold no data (the page asks for an API key and
    # reads everything from /v1 with it).
    ("verifier", "GET", "/dashboard/"),
    ("verifier", "GET", "/dashboard/<path:asset>"),
    ("verifier", "GET", "/v1/openapi.json"),
}
SAMPLE = {"agent_id": "edge-1", "name": "p", "action": "pause", "round_id": "r1",
          "path:asset": "app.js", "int:size": "1"}  # fmt: skip


@pytest.fixture
def apps(tmp_path: Path, trust_dir: Path, redis_url: str) -> Iterator[dict[str, Flask]]:
    with service_apps(tmp_path, trust_dir, redis_url) as both:
        yield both


def _keys(app: Flask) -> dict[str, str]:
    store: AccessStore = app.extensions["geoattest.access"]
    now = dt.datetime.now(dt.UTC)
    keys = {role.value: store.create(f"walk-{role}", role, now) for role in Role}
    keys["revoked"] = store.create("walk-revoked", Role.ADMIN, now)
    store.revoke("walk-revoked", now)
    return keys


def _routes(app: Flask) -> Iterator[tuple[str, str, str]]:
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            path = rule.rule
            for name, value in SAMPLE.items():
                path = path.replace(f"<{name}>", value)
            assert "<" not in path, f"no sample value for {rule.rule}"
            yield (
                method,
                rule.rule,
                path,
            )


def test_every_route_declares_who_may_call_it(apps: dict[str, Flask]) -> None:
    for service, app in apps.items():
        for rule in app.url_map.iter_rules():
            access = access_of(app, rule.endpoint)
            assert access is not None, f"{service} {rule.rule} declares no access rule"
            for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
                if access == PUBLIC:
                    assert (service, method, rule.rule) in PUBLIC_ROUTES, (service, rule.rule)


@pytest.mark.parametrize("service", ["registrar", "verifier"])
def test_every_operator_route_refuses_no_key_a_bad_key_and_a_lower_role(
    apps: dict[str, Flask], service: str
) -> None:
    app = apps[service]
    keys = _keys(app)
    client = app.test_client()
    walked = 0
    for method, rule, path in _routes(app):
        if (service, method, rule) in PUBLIC_ROUTES:
            continue
        needed = access_of(app, app.url_map.bind("").match(path, method=method)[0])
        assert isinstance(needed, Role)
        body: dict[str, object] | None = {} if method in ("POST", "PUT") else None
        for header, status, code in (
            ({}, 401, "api_key_required"),
            ({"Authorization": "Bearer gak_0123"}, 401, "api_key_invalid"),
            ({"Authorization": f"Bearer {keys['revoked']}"}, 401, "api_key_invalid"),
        ):
            answer = client.open(path, method=method, json=body, headers=header)
            assert answer.status_code == status, (method, path, answer.json)
            assert answer.json is not None
            assert answer.json["error"]["code"] == code
        for role in Role:
            answer = client.open(
                path, method=method, json=body, headers={"Authorization": f"Bearer {keys[role]}"}
            )
            if role.allows(needed):
                assert answer.status_code not in (401, 403), (role, method, path, answer.json)
            else:
                assert answer.status_code == 403, (role, method, path, answer.json)
                assert answer.json is not None
                assert answer.json["error"]["code"] == "role_insufficient"
        walked += 1
    assert walked >= (3 if service == "registrar" else 12)


def test_mutating_calls_are_audited_and_only_admins_read_the_audit(
    apps: dict[str, Flask],
) -> None:
    app = apps["verifier"]
    keys = _keys(app)
    client = app.test_client()
    client.delete("/v1/policies/nope", headers={"Authorization": f"Bearer {keys['admin']}"})
    client.delete("/v1/policies/nope")  # anonymous: refused, and recorded all the same
    viewer = client.get("/v1/audit", headers={"Authorization": f"Bearer {keys['viewer']}"})
    assert viewer.status_code == 403
    audit = client.get("/v1/audit", headers={"Authorization": f"Bearer {keys['admin']}"})
    entries = audit.json["entries"] if audit.json else []
    assert [(e["method"], e["path"], e["actor"], e["status"]) for e in entries[:2]] == [
        ("DELETE", "/v1/policies/nope", None, 401),
        ("DELETE", "/v1/policies/nope", "walk-admin", 404),
    ]
    assert entries[0]["remote"] == "127.0.0.1"


@pytest.mark.parametrize("key", ["", "short", "gak_0123456789abcdef_tooShort", "x" * 80])
def test_a_configured_key_must_be_a_whole_key(key: str) -> None:
    with pytest.raises(ValidationError, match="not an API key"):
        load_settings(api_key=key)


def test_only_the_hash_of_a_key_is_stored(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'keys.sqlite'}")
    from geoattest.db import migrate

    migrate(engine)
    store = AccessStore(session_factory(engine))
    key = store.create("ops", Role.VIEWER, dt.datetime.now(dt.UTC))
    secret = key.rsplit("_", 1)[1]
    engine.dispose()
    raw = (tmp_path / "keys.sqlite").read_bytes()
    for sidecar in tmp_path.glob("keys.sqlite-*"):
        raw += sidecar.read_bytes()
    assert secret.encode() not in raw
    assert key.encode() not in raw


def test_a_key_with_a_known_id_and_another_secret_is_refused(apps: dict[str, Flask]) -> None:
    app = apps["verifier"]
    keys = _keys(app)
    prefix, key_id, _ = keys["admin"].split("_", 2)
    forged = f"{prefix}_{key_id}_{'A' * 43}"
    answer = app.test_client().get("/v1/agents", headers={"Authorization": f"Bearer {forged}"})
    assert answer.status_code == 401
    assert answer.json is not None
    assert answer.json["error"]["code"] == "api_key_invalid"
