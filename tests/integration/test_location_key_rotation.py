"""Rotating the location key answers a fresh registrar nonce: a registration without one, an old
certification replayed, one made over another agent's nonce, a nonce used twice or expired are
each refused and change nothing; the verifier re-derives the nonce-bound qualifying data and
accepts the rotated key. Real swtpm, real registrar over HTTP.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agent.location import ensure_location_key
from agent.tpm_device import DEFAULT_LOCATION_KEY_HANDLE, TpmDevice
from geoattest.db import make_engine
from geoattest.registrar_client import RegistrarClient
from geoattest.trust_files import load_trust_store_dir
from tests.integration.test_location_evidence import enrol_and_activate
from tests.support import MakeSwtpm
from tests.support.registrar_server import RunningRegistrar
from verifier.core.identity import IdentityTrust, check_identity

pytestmark = pytest.mark.swtpm


@dataclass(slots=True)
class Node:
    agent_id: str
    device: TpmDevice
    url: str  # its PUT /v1/agents/<id>/location-key
    rotations: int = 0

    def challenge(self) -> bytes:
        answer = requests.post(f"{self.url}/challenge", timeout=10)
        assert answer.status_code == 201, answer.text
        return bytes.fromhex(answer.json()["nonce"])

    def put(self, body: dict[str, object]) -> requests.Response:
        return requests.put(self.url, json=body, timeout=10)

    def rotated_key(self, nonce: bytes) -> dict[str, object]:
        """A new location key in the TPM (at the next persistent handle), certified over
        ``nonce``."""
        self.rotations += 1
        key = ensure_location_key(
            self.device,
            handle=DEFAULT_LOCATION_KEY_HANDLE + self.rotations,
            agent_id=self.agent_id,
            nonce=nonce,
        )
        return key.model_dump(mode="json")


@pytest.fixture
def node(
    make_swtpm: MakeSwtpm, registrar: RunningRegistrar, client: RegistrarClient
) -> Iterator[Node]:
    with TpmDevice(make_swtpm().tcti) as device:
        enrol_and_activate(device, client, "rotor")
        yield Node("rotor", device, f"{registrar.url}/v1/agents/rotor/location-key")


def _refused(answer: requests.Response, says: str) -> None:
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "location_key_invalid"
    assert says in answer.json()["error"]["message"]


def _verifier_trust(registrar: RunningRegistrar) -> IdentityTrust:
    key = serialization.load_pem_public_key(registrar.signing_key.read_bytes())
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return IdentityTrust(
        ek_store=load_trust_store_dir(registrar.trust_dir), ek_pins=None, registrar_key=key
    )


def test_a_rotation_over_a_fresh_nonce_is_recorded_and_the_verifier_accepts_it(
    node: Node, client: RegistrarClient, registrar: RunningRegistrar
) -> None:
    enrolled = client.get_agent(node.agent_id).location_key_public
    nonce = node.challenge()
    body = node.rotated_key(nonce)
    answer = node.put(body)
    assert answer.status_code == 200, answer.text
    view = client.get_agent(node.agent_id)
    assert view.location_key_public != enrolled
    assert view.location_key_nonce == nonce.hex()
    checked = check_identity(
        view, _verifier_trust(registrar), asked_for=node.agent_id, now=dt.datetime.now(dt.UTC)
    )
    assert checked.location_key_public == view.location_key_public


def test_without_a_nonce_or_with_the_enrolment_certification_it_is_refused(
    node: Node, client: RegistrarClient
) -> None:
    before = client.get_agent(node.agent_id)
    shown = before.model_dump(mode="json")  # what any viewer of the registrar sees
    old = {
        "public": shown["location_key_public"],
        "certify_attest": shown["location_key_certify_attest"],
        "certify_signature": shown["location_key_certify_signature"],
    }
    _refused(node.put(old), "challenge")
    # The enrolment's certification (over no nonce) presented with a fresh nonce.
    _refused(node.put({**old, "nonce": node.challenge().hex()}), "not certified")
    assert client.get_agent(node.agent_id).location_key_public == before.location_key_public


def test_a_rotation_cannot_be_replayed_to_roll_the_key_back(
    node: Node, client: RegistrarClient
) -> None:
    first = node.rotated_key(node.challenge())
    assert node.put(first).status_code == 200
    second = node.rotated_key(node.challenge())
    assert node.put(second).status_code == 200
    # Whoever saw the first rotation sends it again: its nonce is spent.
    _refused(node.put(first), "already used")
    # And with a fresh nonce pasted in, the certification no longer matches.
    _refused(node.put({**first, "nonce": node.challenge().hex()}), "not certified")
    assert client.get_agent(node.agent_id).location_key_nonce == second["nonce"]


def test_a_nonce_issued_for_another_agent_is_refused(
    node: Node, make_swtpm: MakeSwtpm, registrar: RunningRegistrar, client: RegistrarClient
) -> None:
    with TpmDevice(make_swtpm().tcti) as other_device:
        enrol_and_activate(other_device, client, "other")
    other = requests.post(f"{registrar.url}/v1/agents/other/location-key/challenge", timeout=10)
    body = node.rotated_key(bytes.fromhex(other.json()["nonce"]))
    _refused(node.put(body), "not issued for this agent")


def test_an_expired_nonce_is_refused_and_spent(
    node: Node, registrar: RunningRegistrar, client: RegistrarClient
) -> None:
    nonce = node.challenge()
    engine = make_engine(registrar.database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text("UPDATE registrar_location_challenges SET expires_at = :t"),
                {"t": dt.datetime(2020, 1, 1, tzinfo=dt.UTC)},
            )
    finally:
        engine.dispose()
    body = node.rotated_key(nonce)
    before = client.get_agent(node.agent_id).location_key_public
    _refused(node.put(body), "expired")
    _refused(node.put(body), "already used")  # and the refusal spent it
    assert client.get_agent(node.agent_id).location_key_public == before


def test_challenges_are_for_active_agents_only_and_differ(
    node: Node, registrar: RunningRegistrar
) -> None:
    nonces = {node.challenge() for _ in range(6)}
    assert len(nonces) == 6
    unknown = requests.post(f"{registrar.url}/v1/agents/nobody/location-key/challenge", timeout=10)
    assert unknown.status_code == 404
    rows = make_engine(registrar.database_url)
    try:
        with rows.connect() as connection:
            open_ones = connection.execute(
                sa.text("SELECT count(*) FROM registrar_location_challenges")
            ).scalar_one()
    finally:
        rows.dispose()
    assert open_ones <= 4  # bounded per agent, however many are asked for
