"""Policies of real size: ``PUT /v1/policies/<name>`` reads its body in chunks under its own
limit (``policy_upload_max_bytes``), plain or gzip-compressed; every other route keeps the
API's 256 KiB cap. Past the limit (on the wire or once decompressed: a gzip bomb) is a 413, a
corrupt or truncated gzip stream a 400, another encoding a 415; none is a 500, and nothing is
stored. The real verifier app on a real Redis and SQLite file."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import rfc8785
from flask import Flask
from flask.testing import FlaskClient

from geoattest.access.keys import Role
from geoattest.http import MAX_BODY_BYTES
from tests.support.access import bearer, issue_api_key
from tests.support.service_apps import registrar_signing_key, verifier_app

pytestmark = pytest.mark.redis

LIMIT = 2 * 1024 * 1024


@pytest.fixture
def verifier(tmp_path: Path, trust_dir: Path, redis_url: str) -> Iterator[Flask]:
    key = registrar_signing_key(tmp_path, trust_dir)
    app = verifier_app(tmp_path, trust_dir, redis_url, key, policy_upload_max_bytes=LIMIT)
    yield app
    app.extensions["geoattest.engine"].dispose()


@pytest.fixture
def admin(verifier: Flask, tmp_path: Path) -> dict[str, str]:
    return bearer(issue_api_key(f"sqlite:///{tmp_path / 'verifier.sqlite'}", Role.ADMIN))


def _policy(entries: int) -> dict[str, object]:
    digests = {
        f"/usr/lib/pkg{i // 100}/file-{i}.so": [
            "sha256:" + hashlib.sha256(i.to_bytes(4, "big")).hexdigest()
        ]
        for i in range(entries)
    }
    return {"ima_banks": ["sha256"], "runtime_policy": {"version": 1, "digests": digests}}


def _put(
    client: FlaskClient, headers: dict[str, str], body: bytes, encoding: str | None = None
) -> tuple[int, dict[str, object]]:
    extra = {"Content-Encoding": encoding} if encoding else {}
    answer = client.put(
        "/v1/policies/big",
        data=body,
        headers={**headers, **extra, "Content-Type": "application/json"},
    )
    assert answer.json is not None, answer.data[:200]
    return answer.status_code, answer.json


def _code(body: dict[str, object]) -> str:
    error = body["error"]
    assert isinstance(error, dict)
    return str(error["code"])


def test_a_policy_larger_than_the_api_cap_is_stored_plain_or_gzipped(
    verifier: Flask, admin: dict[str, str]
) -> None:
    raw = json.dumps(_policy(8000)).encode()
    assert MAX_BODY_BYTES < len(raw) < LIMIT
    client = verifier.test_client()
    status, plain = _put(client, admin, raw)
    assert status == 200, plain
    status, zipped = _put(client, admin, gzip.compress(raw), "gzip")
    assert status == 200, zipped
    assert zipped["sha256"] == plain["sha256"]  # the same document, whichever way it came
    assert zipped["version"] == 2
    stored = client.get("/v1/policies/big", headers=admin).json
    assert stored is not None
    runtime = stored["document"]["runtime_policy"]
    assert len(runtime["digests"]) == 8000


def test_put_and_the_list_answer_without_the_document(
    verifier: Flask, admin: dict[str, str]
) -> None:
    """A whole-system policy is tens of MB: only ``GET /v1/policies/<name>`` carries it."""
    client = verifier.test_client()
    status, answer = _put(client, admin, json.dumps(_policy(3000)).encode())
    assert status == 200, answer
    assert set(answer) == {"name", "version", "updated_at", "sha256", "size_bytes"}
    runtime = {"version": 1, "digests": {"/opt/café/ü": ["sha256:" + "00" * 32]}}
    small = {"ima_banks": ["sha256"], "max_age_seconds": 30.5, "runtime_policy": runtime}
    put_small = client.put("/v1/policies/small", json=small, headers=admin)
    assert put_small.status_code == 200, put_small.json
    listed = client.get("/v1/policies", headers=admin).json
    assert listed is not None
    assert [p["name"] for p in listed["policies"]] == ["big", "small"]
    for item in listed["policies"]:
        assert "document" not in item
        full = client.get(f"/v1/policies/{item['name']}", headers=admin).json
        assert full is not None
        canonical = rfc8785.dumps(full["document"])  # digest and size: of these UTF-8 bytes
        assert (item["sha256"], item["size_bytes"]) == (
            hashlib.sha256(canonical).hexdigest(),
            len(canonical),
        )
        assert (full["sha256"], full["size_bytes"], full["version"]) == (
            item["sha256"], item["size_bytes"], item["version"]
        )  # fmt: skip
    assert answer["size_bytes"] == listed["policies"][0]["size_bytes"]


def test_other_routes_keep_the_api_cap(verifier: Flask, admin: dict[str, str]) -> None:
    answer = verifier.test_client().post(
        "/v1/agents/edge-1",
        data=b'{"policy": "' + b"a" * MAX_BODY_BYTES + b'"}',
        headers={**admin, "Content-Type": "application/json"},
    )
    assert answer.status_code == 413
    assert answer.json is not None
    assert answer.json["error"]["code"] == "request_entity_too_large"


def test_past_the_limit_on_the_wire_or_decompressed_is_413_and_nothing_is_stored(
    verifier: Flask, admin: dict[str, str]
) -> None:
    client = verifier.test_client()
    too_big = json.dumps(_policy(20000)).encode()
    assert len(too_big) > LIMIT
    status, body = _put(client, admin, too_big)
    assert (status, _code(body)) == (413, "request_entity_too_large"), body
    # A bomb: 64 MB of spaces (JSON whitespace) in 64 KB of gzip; refused at the limit.
    bomb = gzip.compress(b"{" + b" " * (64 * 1024 * 1024) + b"}", 9)
    assert len(bomb) < LIMIT // 10
    status, body = _put(client, admin, bomb, "gzip")
    assert (status, _code(body)) == (413, "request_entity_too_large"), body
    assert "decompressed" in str(body["error"])
    assert client.get("/v1/policies/big", headers=admin).status_code == 404


@pytest.mark.parametrize(
    ("body", "encoding", "status", "code"),
    [
        (gzip.compress(b'{"ima_banks": ["sha256"]}')[:-6], "gzip", 400, "malformed_request"),
        (b"not gzip at all", "gzip", 400, "malformed_request"),
        (gzip.compress(b"{}") + b"trailing", "gzip", 400, "malformed_request"),
        (b'{"ima_banks": ["sha256"]}', "br", 415, "unsupported_content_encoding"),
        (gzip.compress(b'{"ima_banks": '), "gzip", 400, "malformed_request"),
        (gzip.compress(b'{"ima_banks": ["md4"]}'), "gzip", 400, "pcr_bank_unknown"),
    ],
    ids=["truncated", "not-gzip", "trailing-data", "brotli", "not-json", "invalid-policy"],
)
def test_a_bad_upload_is_a_clear_4xx(
    verifier: Flask, admin: dict[str, str], body: bytes, encoding: str, status: int, code: str
) -> None:
    got, answer = _put(verifier.test_client(), admin, body, encoding)
    assert (got, _code(answer)) == (status, code), answer


def test_the_body_is_read_only_after_the_caller_is_known(verifier: Flask) -> None:
    status, body = _put(verifier.test_client(), {}, gzip.compress(b"{}"), "gzip")
    assert (status, _code(body)) == (401, "api_key_required")


@pytest.mark.parametrize(
    "document",
    [
        {"ima_banks": ["sha256", "sha3_256"]},
        {"boot_pcrs": {"md5": {"0": "00" * 16}}},
        {"boot_pcrs": {"Sha256": {"0": "00" * 32}}},
    ],
    ids=["ima-banks", "boot-pcrs", "wrong-case"],
)
def test_an_unknown_pcr_bank_is_400_pcr_bank_unknown_and_nothing_is_stored(
    verifier: Flask, admin: dict[str, str], document: dict[str, object]
) -> None:
    client = verifier.test_client()
    good = json.dumps({"ima_banks": ["sha1"]}).encode()
    assert _put(client, admin, good)[0] == 200
    status, body = _put(client, admin, json.dumps(document).encode())
    assert (status, _code(body)) == (400, "pcr_bank_unknown"), body
    assert "unknown PCR bank" in str(body["error"])
    stored = client.get("/v1/policies/big", headers=admin)
    assert stored.status_code == 200
    assert stored.json is not None
    assert stored.json["document"]["ima_banks"] == ["sha1"]  # the stored policy is untouched
