"""What the push-mode tests ask of the stack: a push client for a node, a post sent raw (as an
attacker would), the body of a post, an error's code, a node enrolled with a given certificate,
an agent added, a TLS connection to the listener, a process's children."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from agent.enrolment import ApiEndpoint
from agent.push import PushClient
from geoattest.dev.swtpm import SwtpmInstance
from geoattest.wire_push import PushChallengeView, PushEvidencePost
from tests.integration.push.conftest import Push
from tests.support.swtpm_agent import Node, start_node


def push_client(push: Push, node: Node, agent_id: str | None = None) -> PushClient:
    return PushClient(
        push.url,
        agent_id or node.agent_id,
        node.services[0],
        client_cert=(node.state_dir / "server.pem", node.state_dir / "server-key.pem"),
        verifier_ca=push.stack.verifier.client_ca,
        timeout=10.0,
    )


def raw_post(client: PushClient, body: str) -> requests.Response:
    return client._http.post(  # the agent's own mTLS session, to send what an attacker would
        client._url + "/v1/push/evidence",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
        timeout=10,
        verify=client._verify,
    )


def post_body(client: PushClient, node: Node, challenge: PushChallengeView) -> str:
    evidence = node.services[0].collect(challenge.request)
    return PushEvidencePost(
        agent_id=node.agent_id, nonce=challenge.request.nonce, evidence=evidence
    ).model_dump_json(exclude_defaults=True)


def error_code(response: requests.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


@contextmanager
def enrolled_with(
    push: Push, swtpm: SwtpmInstance, workdir: Path, agent_id: str, certificate: bytes
) -> Iterator[Node]:
    """A node enrolled (again) with ``certificate`` as its TLS certificate, forgotten after."""
    node = start_node(
        swtpm,
        workdir,
        agent_id,
        client_ca=push.stack.verifier.client_ca,
        registrar=push.stack.registrar,
    )
    registrar = push.stack.registrar.client()
    try:
        url = f"https://127.0.0.1:{node.port}"
        node.enrol(registrar, ApiEndpoint(url=url, tls_certificate=certificate))
        yield node
    finally:
        node.stop_api()
        push.stack.verifier.forget(registrar, [agent_id])
        registrar.close()


def add_agent(push: Push, agent_id: str, mode: str) -> requests.Response:
    return push.stack.verifier.request(
        "POST", f"/v1/agents/{agent_id}", json={"policy": "swtpm-edge", "mode": mode}
    )


def tls_to_listener(push: Push, node: Node) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=push.stack.verifier.client_ca)
    context.load_cert_chain(node.state_dir / "server.pem", node.state_dir / "server-key.pem")
    port = int(push.url.rsplit(":", 1)[1])
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def children_of(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines())
        except (OSError, ValueError):
            continue  # exited meanwhile
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found
