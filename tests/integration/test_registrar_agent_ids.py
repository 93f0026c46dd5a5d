"""Agent ids at every registrar edge: one rule (``wire.AGENT_ID_PATTERN``), checked on every
route that takes an id, quoted by the client, and answered for exactly the id asked.

Raw requests go through ``http.client`` so that the path reaches the server as written (HTTP
libraries such as requests resolve ``..`` before sending).
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from flask import Flask

from agent.enrolment import enrol
from agent.tpm_device import TpmDevice
from geoattest.dev.swtpm import SwtpmInstance
from geoattest.errors import AgentIdInvalid, NotFound, RegistrarAnswerInvalid
from geoattest.registrar_client import RegistrarClient
from geoattest.settings import load_settings
from geoattest.wire import AgentView
from registrar.app import create_app
from tests.support.registrar_server import RunningRegistrar
from tests.support.served_app import served

# As sent on the wire (percent-encoded where a client would encode).
BAD_PATH_IDS = [
    "edge-1%3Fshadow",  # "edge-1?shadow": a query smuggled into the id
    "..",
    ".",
    ".hidden",
    "-rf",
    "a" * 65,
    "a" * 2000,
    "%C3%A9dge",  # non-ASCII "édge"
    "%FF",  # not UTF-8
    "edge%20one",
    "edge-1%00",
    "edge-1%0A",
]
# As a caller hands them to the client.
BAD_IDS = ["edge-1?shadow", "..", ".", "-rf", "a" * 65, "édge", "edge one", "edge-1/x", "", "a\n"]


def _raw(
    base_url: str, method: str, path: str, body: object | None = None, key: str | None = None
) -> tuple[int, dict[str, object]]:
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def _agent_routes(tmp_path: Path, trust_dir: Path) -> list[tuple[str, str]]:
    """(method, rule) of every registrar route that takes an agent id, from the app's URL map."""
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'map.sqlite'}",
        registrar_state_dir=tmp_path / "map-state",
        ek_ca_dir=trust_dir,
    )
    app = create_app(settings)
    app.extensions["geoattest.engine"].dispose()
    routes = [
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if "<agent_id>" in rule.rule
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
    ]
    assert len(routes) >= 4, routes  # activate, location-key, show, delete (+ any new one)
    return routes


def test_every_route_refuses_a_bad_agent_id_with_400(
    tmp_path: Path, trust_dir: Path, registrar: RunningRegistrar
) -> None:
    for method, rule in _agent_routes(tmp_path, trust_dir):
        for bad in BAD_PATH_IDS:
            path = rule.replace("<agent_id>", bad)
            body: dict[str, object] | None = {} if method in ("POST", "PUT") else None
            status, answer = _raw(registrar.url, method, path, body)
            error = answer["error"]
            assert isinstance(error, dict)
            assert (status, error["code"]) == (400, "agent_id_invalid"), (method, path, answer)


def test_a_query_smuggled_into_an_id_reaches_no_record(registrar: RunningRegistrar) -> None:
    status, answer = _raw(registrar.url, "GET", "/v1/agents/edge-1%3Fshadow")
    assert status == 400
    assert answer["error"] == {
        "code": "agent_id_invalid",
        "message": "'edge-1?shadow' is not an agent id: 1-64 of [A-Za-z0-9._-], "
        "starting with a letter or digit",
    }
    status, listing = _raw(registrar.url, "GET", "/v1/agents", key=registrar.api_key)
    assert (status, listing) == (200, {"agents": []})


@pytest.mark.parametrize("bad", BAD_IDS)
def test_client_refuses_a_bad_id_before_sending(bad: str) -> None:
    # Nothing listens on port 1: had the client sent anything it would be unreachable.
    client = RegistrarClient("http://127.0.0.1:1", timeout=1)
    with pytest.raises(AgentIdInvalid):
        client.get_agent(bad)
    with pytest.raises(AgentIdInvalid):
        client.activate(bad, b"\x00" * 32)
    with pytest.raises(AgentIdInvalid):
        client.delete_agent(bad)
    client.close()


@pytest.mark.swtpm
def test_registrar_answers_for_exactly_the_id_asked(
    swtpm: SwtpmInstance, client: RegistrarClient
) -> None:
    with TpmDevice(swtpm.tcti) as device:
        enrol(device, client, "edge-1")
    assert client.get_agent("edge-1").agent_id == "edge-1"
    for near in ("EDGE-1", "edge-1.", "edge-10", "edge-"):
        with pytest.raises(NotFound):
            client.get_agent(near)


def _forged_view(agent_id: str) -> dict[str, object]:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    view = AgentView(
        agent_id=agent_id,
        state="active",
        ek_fingerprint="ab" * 32,
        ek_certificate=b"\x30",
        ek_public=b"\x00",
        ak_public=b"\x00",
        ak_name="00",
        ek_anchor_subject="CN=forged",
        ek_anchor_fingerprint="cd" * 32,
        tpm_manufacturer=None,
        tpm_model=None,
        purchase_order=None,
        asset_tag=None,
        enrolled_at=now,
        activated_at=now,
    )
    return view.model_dump(mode="json")


@pytest.fixture
def lying_registrar() -> Iterator[str]:
    """An on-path attacker's registrar over real HTTP: every answer is about ``edge-2``."""
    app = Flask("lying-registrar")

    @app.get("/v1/agents/<agent_id>")
    def show(agent_id: str) -> dict[str, object]:
        return _forged_view("edge-2")

    @app.post("/v1/agents/<agent_id>/activate")
    def activate(agent_id: str) -> dict[str, object]:
        return _forged_view("edge-2")

    with served(app, "lying-registrar") as url:
        yield url


def test_client_refuses_an_answer_about_another_agent(lying_registrar: str) -> None:
    client = RegistrarClient(lying_registrar)
    with pytest.raises(RegistrarAnswerInvalid, match="for agent 'edge-2', not 'edge-1'"):
        client.get_agent("edge-1")
    with pytest.raises(RegistrarAnswerInvalid):
        client.activate("edge-1", b"\x00" * 32)
    client.close()
