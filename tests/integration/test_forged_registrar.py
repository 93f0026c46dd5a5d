"""A verifier facing a forged registrar answer (an on-path attacker on the plain-HTTP link, or a
registrar that lies) refuses it: through its real API, its real registrar client over HTTP, with
the registrar key it pins and its own EK trust store."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

import tpm
from geoattest.access.keys import Role
from geoattest.access.store import AccessStore
from geoattest.settings import load_settings
from geoattest.wire import AgentView, GnssReceiverWire
from tests.support.software_pki import make_ca
from tests.support.software_tpm import SoftwareTpm
from tests.unit.verifier.core.test_identity import Registrar
from verifier.app import create_app

pytestmark = pytest.mark.redis


class FakeRegistrar:
    """Answers ``GET /v1/agents/<id>`` with whatever record the test sets."""

    def __init__(self) -> None:
        self.answer: AgentView | None = None
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's naming
                body = b"{}" if owner.answer is None else owner.answer.model_dump_json().encode()
                self.send_response(200 if owner.answer is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def fake() -> Iterator[FakeRegistrar]:
    running = FakeRegistrar()
    yield running
    running.server.shutdown()
    running.server.server_close()


def test_forged_registrar_answers_are_refused(
    tmp_path: Path, redis_url: str, fake: FakeRegistrar
) -> None:
    ca = make_ca()
    (tmp_path / "ek-ca").mkdir()
    (tmp_path / "ek-ca" / "ca.pem").write_bytes(ca.pem)
    genuine = Registrar(clock=None)
    pinned = tmp_path / "registrar-signing-key.pem"
    pinned.write_bytes(
        genuine.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    app = create_app(
        load_settings(
            database_url=f"sqlite:///{tmp_path / 'verifier.sqlite'}",
            redis_url=redis_url,
            registrar_url=fake.url,
            verifier_tls_dir=tmp_path / "verifier-tls",
            ek_ca_dir=tmp_path / "ek-ca",
            registrar_signing_key=pinned,
        )
    )
    store: AccessStore = app.extensions["geoattest.access"]
    key = store.create("ops", Role.ADMIN, dt.datetime.now(dt.UTC))
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    assert client.put("/v1/policies/p", json={}, headers=headers).status_code == 200
    node, attacker = SoftwareTpm(ca), SoftwareTpm(ca)

    def add() -> tuple[int, str]:
        answer = client.post("/v1/agents/edge", json={"policy": "p"}, headers=headers)
        assert answer.json is not None
        return answer.status_code, str(answer.json.get("error", {}).get("code"))

    # Signed now: the helper's default time is its module's import, which in a long suite run is
    # older than the verifier's freshness window.
    now = dt.datetime.now(dt.UTC)
    record = genuine.view(node, signed_at=now)
    # An attacker's software AK swapped into a genuine, signed record.
    fake.answer = record.model_copy(update={"ak_public": tpm.encode_tpm2b_public(attacker.ak)})
    assert add() == (502, "registrar_answer_invalid")
    # A whole record forged and signed by the attacker's own key.
    fake.answer = Registrar(clock=None).view(attacker)
    assert add() == (502, "registrar_answer_invalid")
    # Signed by the pinned key, yet an EK from a manufacturer the verifier does not trust.
    fake.answer = genuine.view(SoftwareTpm(make_ca("Untrusted Manufacturer")), signed_at=now)
    assert add() == (403, "ek_untrusted")
    # A GNSS receiver the registrar never signed, claimed on the wire for a record without one.
    claimed = GnssReceiverWire(source="serial", texts=["HW UBX-G70xx 00070000"])
    fake.answer = record.model_copy(update={"gnss_receiver": claimed})
    assert add() == (502, "registrar_answer_invalid")
    # The record as the registrar signed it is taken.
    fake.answer = record
    status, _ = add()
    assert status == 201
    shown = client.get("/v1/agents/edge", headers=headers).json
    assert shown is not None
    assert shown["stored_state"] == "registered"
    app.extensions["geoattest.engine"].dispose()
