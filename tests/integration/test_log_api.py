"""``/v1/log`` over real HTTP on a real SQLite file: what an auditor fetches verifies with
nothing but the published log keys, and bad questions get 4xx answers with stable codes."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from geoattest.settings import load_settings
from tests.support.access import bearer, issue_api_key
from tests.support.identity_trust import unused_identity_trust
from tests.support.served_app import served
from verifier.app import close_app, create_app
from verifier.core import merkle
from verifier.core.checkpoint import verify_checkpoint
from verifier.core.jwk import parse_public_keys
from verifier.core.log_entry import AuditAction, AuditEntry, RecordEntry, decode_entry
from verifier.engine.runtime import log_keyring
from verifier.storage.log import TransparencyLog

NOW = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)


@dataclass
class Api:
    url: str
    log: TransparencyLog
    sign: Callable[[], None]
    admin: dict[str, str]


@pytest.fixture
def api(tmp_path: Path, redis_url: str) -> Iterator[Api]:
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'verifier.sqlite'}",
        redis_url=redis_url,
        **unused_identity_trust(tmp_path),
        verifier_tls_dir=tmp_path / "tls",
        verifier_keys_dir=tmp_path / "keys",
        log_origin="geoattest/log/api-test",
    )
    app = create_app(settings)
    log: TransparencyLog = app.extensions["geoattest.log"]
    keys = log_keyring(settings)

    def sign() -> None:
        while log.sequence(NOW):
            pass
        log.sign(keys.active(), NOW)

    try:
        with served(app, "verifier-api") as url:
            yield Api(
                url=f"{url}/v1/log",
                log=log,
                sign=sign,
                admin=bearer(issue_api_key(settings.database_url)),
            )
    finally:
        close_app(app)


def _fill(api: Api, count: int) -> None:
    api.log.append(
        [
            RecordEntry(agent_id="edge-1", seq=n, digest=merkle.leaf_hash(bytes([n])), ended_at=NOW)
            for n in range(1, count + 1)
        ],
        NOW,
    )
    api.sign()


def _get(api: Api, path: str, **params: str | int) -> requests.Response:
    return requests.get(f"{api.url}{path}", params=params, headers=api.admin, timeout=10)


def test_a_checkpoint_and_its_proofs_verify_with_the_published_keys(api: Api) -> None:
    _fill(api, 11)
    keys = parse_public_keys(_get(api, "/keys").content)
    body = _get(api, "/checkpoint").json()
    signed = verify_checkpoint(body["checkpoint"], keys, origin="geoattest/log/api-test")
    assert (signed.checkpoint.size, signed.checkpoint.root.hex()) == (11, body["root"])
    entries = _get(api, "/entries", start=0, end=11).json()["entries"]
    assert len(entries) == 11
    for item in entries:
        data = base64.b64decode(item["entry"])
        assert merkle.leaf_hash(data).hex() == item["leaf_hash"]
        assert decode_entry(data).agent_id == "edge-1"
        proof = _get(api, "/proof/inclusion", index=item["index"], size=11).json()
        path = [bytes.fromhex(node) for node in proof["path"]]
        merkle.verify_inclusion(
            item["index"], 11, merkle.leaf_hash(data), path, signed.checkpoint.root
        )
    by_hash = _get(api, "/proof/inclusion", leaf_hash=entries[4]["leaf_hash"], size=11).json()
    assert by_hash["index"] == 4


def test_consistency_between_two_signed_checkpoints_verifies(api: Api) -> None:
    _fill(api, 5)
    keys = parse_public_keys(_get(api, "/keys").content)
    old = verify_checkpoint(_get(api, "/checkpoints/5").json()["checkpoint"], keys).checkpoint
    _fill(api, 9)
    new = verify_checkpoint(_get(api, "/checkpoint").json()["checkpoint"], keys).checkpoint
    proof = _get(api, "/proof/consistency", **{"from": 5, "to": new.size}).json()
    path = [bytes.fromhex(node) for node in proof["path"]]
    merkle.verify_consistency(5, new.size, old.root, new.root, path)


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/proof/inclusion", {"index": 0}, 400, "malformed_request"),
        ("/proof/inclusion", {"index": 3, "size": 3}, 400, "malformed_request"),
        ("/proof/inclusion", {"index": "-1", "size": 3}, 400, "malformed_request"),
        ("/proof/inclusion", {"index": 0, "size": 99}, 404, "not_found"),
        ("/proof/inclusion", {"leaf_hash": "zz", "size": 3}, 400, "malformed_request"),
        ("/proof/inclusion", {"leaf_hash": "00" * 32, "size": 3}, 404, "not_found"),
        ("/proof/consistency", {"from": 0, "to": 3}, 400, "malformed_request"),
        ("/proof/consistency", {"from": 3, "to": 2}, 400, "malformed_request"),
        ("/entries", {"start": 0, "end": 5000}, 400, "malformed_request"),
        ("/checkpoints/7", {}, 404, "not_found"),
    ],
)
def test_bad_questions_get_4xx_with_a_stable_code(
    api: Api, path: str, params: dict[str, str | int], status: int, code: str
) -> None:
    _fill(api, 3)
    response = _get(api, path, **params)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_a_key_service_records_a_release_in_the_log(api: Api) -> None:
    body = {
        "action": "key_released",
        "actor": "keys@relying-party",
        "subject": "model-k1",
        "agent_id": "edge-1",
        "details": {"token_jti": "t-1"},
    }
    response = requests.post(f"{api.url}/audit", json=body, headers=api.admin, timeout=10)
    assert response.status_code == 202, response.text
    refused = requests.post(
        f"{api.url}/audit", json={**body, "action": "policy_put"}, headers=api.admin, timeout=10
    )
    assert refused.status_code == 400
    api.sign()
    entry = decode_entry(api.log.entries(0, 1)[0].entry)
    assert isinstance(entry, AuditEntry)
    assert (entry.action, entry.subject, entry.agent_id) == (
        AuditAction.KEY_RELEASED,
        "model-k1",
        "edge-1",
    )
