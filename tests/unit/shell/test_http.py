"""The JSON error contract of every service, checked on a tiny Flask app (no services needed)."""

from __future__ import annotations

import logging

import pytest
from flask import Flask, jsonify
from flask.testing import FlaskClient
from flask.typing import ResponseReturnValue
from pydantic import BaseModel

from geoattest.errors import EkUntrusted, MalformedRequest
from geoattest.http import install_api_plumbing, parse_body, validate_json
from geoattest.query_args import int_arg, time_arg


class _Body(BaseModel):
    name: str


@pytest.fixture
def client() -> FlaskClient:
    app = Flask("test")
    install_api_plumbing(app)

    @app.post("/echo")
    def echo() -> ResponseReturnValue:
        return jsonify({"name": parse_body(_Body).name})

    @app.get("/args")
    def args() -> ResponseReturnValue:
        moment = time_arg("at")
        return jsonify(
            {"n": int_arg("n", 7, 1, 1000), "at": moment.isoformat() if moment else None}
        )

    @app.get("/refuse")
    def refuse() -> ResponseReturnValue:
        raise EkUntrusted("issuer 'CN=x' not in trust store")

    @app.get("/bug")
    def bug() -> ResponseReturnValue:
        raise RuntimeError("secret internals")

    return app.test_client()


def test_geoattest_error_renders_code_and_status(client: FlaskClient) -> None:
    response = client.get("/refuse")
    assert response.status_code == 403
    assert response.json == {
        "error": {"code": "ek_untrusted", "message": "issuer 'CN=x' not in trust store"}
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data": "not json", "content_type": "application/json"},
        {"json": ["a list"]},
        {"json": {"name": 3}},
        {"json": {}},
        {"data": "name=x"},
    ],
)
def test_malformed_bodies_are_400_not_500(client: FlaskClient, kwargs: dict[str, object]) -> None:
    response = client.post("/echo", **kwargs)
    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"]["code"] == "malformed_request"


def test_unknown_route_and_method_are_json(client: FlaskClient) -> None:
    missing = client.get("/nope")
    assert missing.status_code == 404
    assert missing.json is not None
    assert missing.json["error"]["code"] == "not_found"
    wrong = client.get("/echo")
    assert wrong.status_code == 405
    assert wrong.json is not None
    assert wrong.json["error"]["code"] == "method_not_allowed"


def test_oversized_body_is_413(client: FlaskClient) -> None:
    response = client.post("/echo", data=b"x" * (300 * 1024), content_type="application/json")
    assert response.status_code == 413
    assert response.json is not None
    assert response.json["error"]["code"] == "request_entity_too_large"


def test_bug_is_a_logged_500_without_internals(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = client.get("/bug")
    assert response.status_code == 500
    assert response.json == {
        "error": {"code": "internal_error", "message": "internal error; see the server log"}
    }
    assert "secret internals" not in response.get_data(as_text=True)
    assert any("unhandled error" in record.message for record in caplog.records)


def test_request_id_is_echoed(client: FlaskClient) -> None:
    response = client.get("/refuse", headers={"X-Request-Id": "abc123"})
    assert response.headers["X-Request-Id"] == "abc123"
    assert len(client.get("/refuse").headers["X-Request-Id"]) == 32


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": "a", "name": "b"}',
        b'{"name": "\\ud800"}',
        b'{"name": "a", "n": NaN}',
        b'{"name": "a", "n": 1e999}',
        b'{"name": "a", "n": 18446744073709551616}',
        b"[" * 50_000,
    ],
)
def test_bodies_without_one_meaning_are_400(client: FlaskClient, body: bytes) -> None:
    response = client.post("/echo", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"]["code"] == "malformed_request"


@pytest.mark.parametrize(
    "query",
    [
        "n=0",
        "n=1001",
        "n=-1",
        "n=%C2%B2",  # "²": str.isdigit() says yes, int() says no
        "n=1e3",
        "n=",
        "n=" + "9" * 400,
        "at=yesterday",
        "at=0001-01-01T00:00:00%2B14:00",  # overflows when moved to UTC
        "at=9999-12-31T23:59:59-14:00",
        "at=1969-12-31T23:59:59Z",
    ],
)
def test_query_arguments_outside_their_range_are_400(client: FlaskClient, query: str) -> None:
    response = client.get(f"/args?{query}")
    assert response.status_code == 400, response.json
    assert response.json is not None
    assert response.json["error"]["code"] == "malformed_request"


def test_query_arguments_in_range_are_read() -> None:
    app = Flask("test")
    install_api_plumbing(app)
    with app.test_request_context("/args?n=1000&at=2026-12-01T10:00:00%2B02:00"):
        assert int_arg("n", 7, 1, 1000) == 1000
        moment = time_arg("at")
        assert moment is not None
        assert moment.isoformat() == "2026-12-01T08:00:00+00:00"
    with app.test_request_context("/args?at=2026-12-01T10:00:00"):
        assert int_arg("n", 7, 1, 1000) == 7
        assert str(time_arg("at")) == "2026-12-01 10:00:00+00:00"  # naive is UTC


class _Counts(BaseModel):
    counts: dict[str, int]


def test_client_chosen_names_in_messages_are_escaped_and_bounded() -> None:
    with pytest.raises(MalformedRequest) as caught:
        validate_json(_Counts, {"counts": {"a\nFAKE LOG LINE\x1b[31m" * 50: "x"}})
    message = caught.value.message
    assert "FAKE" in message  # the name is shown, escaped
    assert message.isascii()
    assert message.isprintable()
    assert len(message) < 300
