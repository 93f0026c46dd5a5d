"""Attestation-gated model keys end to end, on swtpm nodes.

Real parts only: each node is a swtpm with an EK certificate from the session's CA, an IMA log
written like a kernel's (PCR 10 extended in the swtpm), a GNSS receiver replaying a real capture
live (restamped to now, as ``test_location_e2e`` does), the agent's evidence API over mTLS and its
workload API on a Unix socket. The verifier (API + Celery worker and beat, redis-server, SQLite,
Natural Earth zones) requires zone DEU; the key service releases model key K, bound to DEU and to
the executable of program A (a copy of the interpreter), to valid PoG tokens. The workloads are
real processes running ``geoattest keys open`` and ``geoattest token get|verify``.

The receiver is fed in-process (``LocationProvider.feed``), so the node declares a serial
source: what it would be with the receiver on a port (replayed files are another test's).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from agent.location import LocationProvider
from agent.server import RunningWorkloadApi, start_workload_api
from agent.tpm_device import DEFAULT_LOCATION_KEY_HANDLE
from geoattest.dev.ima_emulator import ImaEmulator
from geoattest.dev.swtpm import SwtpmCa, SwtpmInstance
from geoattest.settings import load_settings
from geofence import SourceKind
from keyrelease.app import create_app as create_key_service
from keyrelease.keystore import KeyStore
from keyrelease.ledger import ReleaseLedger
from keyrelease.sealing import seal
from tests.paths import vector
from tests.support import MakeSwtpm
from tests.support.live_gnss import LiveReceiver, black_forest, loire_valley
from tests.support.programs import Program, program
from tests.support.registrar_server import RunningRegistrar
from tests.support.served_app import served
from tests.support.swtpm_agent import Node, start_node, swtpm_node_policy
from tests.support.verifier_stack import RunningVerifier, service_stack
from verifier.tokens.status import read_status
from verifier.tokens.verify import Rejected, TrustedKeys

pytestmark = [pytest.mark.swtpm, pytest.mark.redis, pytest.mark.slow]

POLICY = "models-de"
AUDIENCE = "model-keys"
KEY_ID = "llm-7b"


@dataclass
class Stack:
    registrar: RunningRegistrar
    verifier: RunningVerifier
    keys_url: str
    key_store: KeyStore
    releases: ReleaseLedger
    a: Program
    b: Program
    model: Path
    sealed: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, test_ca: SwtpmCa) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("tokens-e2e")
    a, b = program(work / "bin", "model-server-a"), program(work / "bin", "model-server-b")
    zones = vector("zones/ne_110m_admin_0_countries.geojson")
    allowed = {"/opt/model-server": a.sha256, "/opt/other-server": b.sha256}
    document = swtpm_node_policy(
        allowed,
        runtime_policy_version=2,
        location={"zones": ["DEU"]},
        # A passed round vouches for 20 s: tokens live long enough for two CLI runs.
        max_age_seconds=20,
    )
    with service_stack(
        work, test_ca.trust_store, policies={POLICY: document}, zones_file=zones, zones_repair=True
    ) as services:
        registrar, verifier = services.registrar, services.verifier
        key_settings = load_settings(
            verifier_url=verifier.url,
            keys_dir=work / "model-keys",
            keys_database_url=f"sqlite:///{work / 'releases.sqlite'}",
            keys_audience=AUDIENCE,
            round_interval_seconds=0.5,
        )
        key_app = create_key_service(key_settings)
        store = KeyStore(key_settings.keys_dir)
        key = store.create(
            KEY_ID,
            zones=frozenset({"DEU"}),
            workloads=frozenset({a.sha256}),
            now=dt.datetime.now(dt.UTC),
        )
        model = work / "weights.bin"
        model.write_bytes(os.urandom(256 * 1024))
        sealed = work / "weights.enc"
        seal(model, sealed, key.key)
        with served(key_app, "key-service") as keys_url:
            yield Stack(
                registrar=registrar,
                verifier=verifier,
                keys_url=keys_url,
                key_store=store,
                releases=ReleaseLedger(key_app.extensions["geoattest.engine"]),
                a=a,
                b=b,
                model=model,
                sealed=sealed,
            )


@dataclass
class ModelNode:
    """A geofencing swtpm node that ran both programs, with its workload API socket."""

    node: Node
    receiver: LiveReceiver
    workload: RunningWorkloadApi
    socket: Path

    @property
    def agent_id(self) -> str:
        return self.node.agent_id

    @property
    def ima(self) -> ImaEmulator:
        return self.node.ima

    def stop(self) -> None:
        self.workload.stop()
        self.receiver.stop()
        self.node.stop_api()


def _start_node(stack: Stack, swtpm: SwtpmInstance, workdir: Path, agent_id: str) -> ModelNode:
    provider = LocationProvider(
        None, None, DEFAULT_LOCATION_KEY_HANDLE, wait_for_fix_s=1.5, source_kind=SourceKind.SERIAL
    )
    node = start_node(
        swtpm,
        workdir,
        agent_id,
        client_ca=stack.verifier.client_ca,
        registrar=stack.registrar,
        location=provider,
        # both programs ran on this node
        measured={"/opt/model-server": stack.a.sha256, "/opt/other-server": stack.b.sha256},
    )
    socket_path = workdir / "workload.sock"
    settings = load_settings(
        verifier_url=stack.verifier.url,
        workload_socket=socket_path,
        workload_socket_mode=0o600,
        token_status_poll_seconds=0.5,
    )
    workload = start_workload_api(settings, node.services[0], agent_id)
    assert workload is not None
    receiver = LiveReceiver(provider, black_forest())
    return ModelNode(node, receiver, workload, socket_path)


@pytest.fixture
def node(
    stack: Stack, make_swtpm: MakeSwtpm, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[ModelNode]:
    agent_id = f"model-{hashlib.sha256(request.node.name.encode()).hexdigest()[:10]}"
    started = _start_node(stack, make_swtpm(), tmp_path, agent_id)
    response = stack.verifier.add_agent(agent_id, POLICY)
    assert response.status_code == 201, response.text
    stack.verifier.wait_for_state(agent_id, "attested")
    yield started
    started.stop()
    stack.verifier.forget(stack.registrar.client(), [agent_id])


def _run(
    stack: Stack, node: ModelNode, prog: Program, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(prog.path), "-m", "geoattest", *args],
        env=prog.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _open_model(
    stack: Stack, node: ModelNode, prog: Program, out: Path
) -> subprocess.CompletedProcess[str]:
    return _run(
        stack, node, prog, "keys", "open", str(stack.sealed), "-o", str(out),
        "--key-id", KEY_ID, "--service", stack.keys_url, "--socket", str(node.socket),
        "--audience", AUDIENCE,
    )  # fmt: skip


def test_the_model_opens_on_an_attested_node_inside_the_zone(
    stack: Stack, node: ModelNode, tmp_path: Path
) -> None:
    out = tmp_path / "weights.bin"
    done = _open_model(stack, node, stack.a, out)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == stack.model.read_bytes()
    released = [e for e in stack.releases.entries(KEY_ID) if e.agent_id == node.agent_id]
    assert [e.outcome for e in released] == ["released"]
    assert released[0].zone_id == "DEU"
    assert released[0].workload_sha256 == stack.a.sha256
    # The same PoG token as a shell user sees it, checked by the relying-party CLI.
    token = _run(stack, node, stack.a, "token", "get", "--type", "pog", "--audience", "svc",
                 "--socket", str(node.socket))  # fmt: skip
    assert token.returncode == 0, token.stderr
    verified = _run(
        stack, node, stack.a, "token", "verify", token.stdout.strip(),
        "--jwks", f"{stack.verifier.url}/.well-known/jwks.json", "--audience", "svc",
        "--require", "pog", "--zone", "DEU", "--max-age", "30",
        "--status", f"{stack.verifier.url}/v1/tokens/status",
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert '"zone": "DEU"' in verified.stdout
    assert stack.a.sha256.hex() in verified.stdout
    wrong_zone = _run(
        stack, node, stack.a, "token", "verify", token.stdout.strip(),
        "--jwks", f"{stack.verifier.url}/.well-known/jwks.json", "--audience", "svc",
        "--zone", "FRA",
    )  # fmt: skip
    assert wrong_zone.returncode == 2
    assert "token_wrong_zone" in wrong_zone.stderr


def test_another_executable_does_not_open_the_model(
    stack: Stack, node: ModelNode, tmp_path: Path
) -> None:
    out = tmp_path / "weights.bin"
    before = _key_releases(stack, "refused", "token_wrong_workload")
    done = _open_model(stack, node, stack.b, out)
    assert done.returncode == 2, done.stderr
    assert "token_wrong_workload" in done.stderr
    assert not out.exists()
    refused = [e for e in stack.releases.entries(KEY_ID) if e.reason == "token_wrong_workload"]
    assert refused, "the refusal was not recorded"
    assert _key_releases(stack, "refused", "token_wrong_workload") == before + 1


def _key_releases(stack: Stack, outcome: str, reason: str) -> float:
    """``geoattest_key_releases_total`` as the key service's open /metrics shows it."""
    text = requests.get(f"{stack.keys_url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "geoattest_key_releases_total" and sample.labels == {
                "outcome": outcome,
                "reason": reason,
            }:
                return float(sample.value)
    return 0.0


def test_after_an_ima_tamper_the_model_does_not_open_and_tokens_are_revoked(
    stack: Stack, node: ModelNode, tmp_path: Path
) -> None:
    before = _run(stack, node, stack.a, "token", "get", "--type", "pog", "--audience", "svc",
                  "--socket", str(node.socket), "--json")  # fmt: skip
    assert before.returncode == 0, before.stderr
    import json

    jti_token = json.loads(before.stdout)["token"]
    node.ima.measure("/tmp/.hidden/miner", b"not in any policy")  # the node's path
    failed = stack.verifier.wait_for_state(node.agent_id, "failed", timeout=15)
    assert failed["reason"] == "ima_entry_not_allowed"
    keys = TrustedKeys.from_jwks(_get(f"{stack.verifier.url}/.well-known/jwks.json"))
    status = read_status(
        _get(f"{stack.verifier.url}/v1/tokens/status").decode(), keys, dt.datetime.now(dt.UTC)
    )
    assert not isinstance(status, Rejected), status
    payload = json.loads(__import__("base64").urlsafe_b64decode(jti_token.split(".")[1] + "=="))
    assert payload["jti"] in status.revoked
    out = tmp_path / "weights.bin"
    done = _open_model(stack, node, stack.a, out)
    assert done.returncode == 2, done.stderr
    assert "AgentNotAttested" in done.stderr or "agent_not_attested" in done.stderr
    assert not out.exists()


def test_after_a_teleport_the_model_does_not_open(
    stack: Stack, node: ModelNode, tmp_path: Path
) -> None:
    node.receiver.switch(loire_valley())  # 600 km in a second
    failed = stack.verifier.wait_for_state(node.agent_id, "failed", timeout=15)
    assert failed["reason"] == "location_implausible", failed
    out = tmp_path / "weights.bin"
    done = _open_model(stack, node, stack.a, out)
    assert done.returncode == 2, done.stderr
    assert not out.exists()


def _get(url: str) -> bytes:
    import requests

    response = requests.get(url, timeout=10)
    response.raise_for_status()
    return response.content
