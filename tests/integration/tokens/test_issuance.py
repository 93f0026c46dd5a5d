"""Issuance on the lease over HTTP: tokens verify and are stored, approved runtime decides the
tier, counters and the audit trail, no token without a lease; keys rotate under issued tokens."""

from __future__ import annotations

import hashlib
import time

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client import REGISTRY

from geoattest.errors import (
    AgentNotAttested,
    TokenLocationUnavailable,
)
from tests.integration.tokens.calls import (
    first_agent,
    post_request,
    session_of,
    verify_for_svc,
)
from tests.support.access import bearer
from tests.support.token_requests import (
    BASH,
    signed_request,
)
from tests.support.token_stack import TokenStack, order
from verifier.tokens.verify import Rejected, RejectReason, VerifiedToken
from verifier.tokens.vocabulary import EarStatus, WorkloadMeasure

pytestmark = [pytest.mark.redis]


# --- issuance -------------------------------------------------------------------------------------


def test_a_token_on_the_lease_verifies_and_is_stored(stack: TokenStack) -> None:
    agent_id = first_agent(stack)
    client = stack.client(agent_id)
    view = client.request(order(stack.runner.sims[agent_id]))
    verdict = verify_for_svc(stack, view.token, workloads=frozenset({BASH}))
    assert isinstance(verdict, VerifiedToken), verdict
    assert verdict.agent_id == agent_id
    assert verdict.status is EarStatus.AFFIRMING
    assert verdict.workload_measured_by is WorkloadMeasure.IMA_ALLOWLISTED
    assert verdict.subject == f"spiffe://geoattest.local/node/{agent_id}/sha256/{BASH.hex()}"
    stored = stack.app.extensions["geoattest.token_ledger"].get(view.jti)
    assert stored is not None
    assert stored.token == view.token
    assert stored.record_seq == verdict.record_seq == view.record_seq
    assert stored.workload_sha256 == BASH
    assert stored.revoked_at is None
    record = stack.runner.records.latest_passed(agent_id)
    assert record is not None
    assert record.digest.hex() == verdict.record_digest


def test_an_executable_the_ima_log_never_measured_gets_a_weaker_tier(stack: TokenStack) -> None:
    agent_id = first_agent(stack)
    other = hashlib.sha256(b"a program nobody measured").digest()
    view = stack.client(agent_id).request(order(stack.runner.sims[agent_id], workload_sha256=other))
    weak = verify_for_svc(stack, view.token)
    assert isinstance(weak, Rejected)
    assert weak.reason is RejectReason.WEAK_TIER
    accepted = verify_for_svc(stack, view.token, min_tier=EarStatus.WARNING)
    assert isinstance(accepted, VerifiedToken)
    assert accepted.workload_measured_by is WorkloadMeasure.AGENT


def test_an_excluded_path_is_a_weaker_claim_than_an_allowlisted_digest(stack: TokenStack) -> None:
    """The simulators' policy excludes /var/log/*: measured there, a file is not vouched for."""
    agent_id = first_agent(stack)
    sim = stack.runner.sims[agent_id]
    sim.measure("/var/log/tool", content=b"a tool under an excluded path")
    stack.attest(agent_id)
    digest = hashlib.sha256(b"a tool under an excluded path").digest()
    view = stack.client(agent_id).request(order(sim, workload_sha256=digest))
    accepted = verify_for_svc(stack, view.token, min_tier=EarStatus.WARNING)
    assert isinstance(accepted, VerifiedToken)
    assert accepted.workload_measured_by is WorkloadMeasure.IMA_EXCLUDED


def test_tokens_issued_and_refused_are_counted(stack: TokenStack) -> None:
    """``geoattest_tokens_issued`` by type and ``geoattest_tokens_refused`` by error code (this
    process's registry: the API serves it on ``/metrics``)."""
    agent_id = first_agent(stack)
    sim = stack.runner.sims[agent_id]

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    issued = value("geoattest_tokens_issued_total", type="por")
    refused = value("geoattest_tokens_refused_total", code="token_location_unavailable")
    stack.client(agent_id).request(order(sim))
    with pytest.raises(TokenLocationUnavailable):
        stack.client(agent_id).request(order(sim, type="pog"))
    assert value("geoattest_tokens_issued_total", type="por") == issued + 1
    assert value("geoattest_tokens_refused_total", code="token_location_unavailable") == (
        refused + 1
    )


def test_an_issued_token_is_recorded_once_and_a_refusal_is_audited(stack: TokenStack) -> None:
    """A 201 is recorded by the token row and its log entry (no audit line: a commit per token,
    ADR 14); a refused request still gets its audit line, with its status."""
    agent_id = first_agent(stack)
    access = stack.app.extensions["geoattest.access"]
    session_id, key = session_of(stack, agent_id)
    before = {entry.id for entry in access.audit(limit=1000)}
    issued = post_request(stack, signed_request(agent_id, session_id, key))
    assert issued.status_code == 201, issued.text
    forged = signed_request(agent_id, session_id, ec.generate_private_key(ec.SECP256R1()))
    assert post_request(stack, forged).status_code == 401
    new = [e for e in access.audit(limit=1000) if e.id not in before and e.path == "/v1/tokens"]
    assert [(e.method, e.status) for e in new] == [("POST", 401)]
    assert stack.app.extensions["geoattest.token_ledger"].get(issued.json()["jti"]) is not None


def test_no_token_without_a_lease(stack: TokenStack) -> None:
    agent_id = first_agent(stack)
    client = stack.client(agent_id)
    client.request(order(stack.runner.sims[agent_id]))  # opens the session while attested
    stack.runner.store.get_agent(agent_id)
    # Let the lease run out: the policy's default lease is 2 x 0.2 s + 5 s + 1 s.
    stale_at = time.time() + 6.6
    while time.time() < stale_at:
        time.sleep(0.2)
    with pytest.raises(AgentNotAttested, match="is stale: no valid lease"):
        client.request(order(stack.runner.sims[agent_id]))


def test_a_pog_token_needs_a_location_policy(stack: TokenStack) -> None:
    agent_id = first_agent(stack)
    with pytest.raises(TokenLocationUnavailable):
        stack.client(agent_id).request(order(stack.runner.sims[agent_id], type="pog"))


# --- keys -----------------------------------------------------------------------------------------


def test_tokens_signed_before_a_rotation_verify_after_it(stack: TokenStack) -> None:
    agent_id = first_agent(stack)
    sim = stack.runner.sims[agent_id]
    before = stack.client(agent_id).request(order(sim))
    rotated = requests.post(
        f"{stack.url}/v1/tokens/keys/rotate", headers=bearer(stack.admin_key), timeout=10
    )
    assert rotated.status_code == 200, rotated.text
    after = stack.client(agent_id).request(order(sim))
    assert before.token.split(".")[0] != after.token.split(".")[0]
    for token in (before.token, after.token):
        assert isinstance(verify_for_svc(stack, token), VerifiedToken)
    jwks = requests.get(f"{stack.url}/.well-known/jwks.json", timeout=10)
    assert "max-age" in jwks.headers["Cache-Control"]
    assert all("d" not in key for key in jwks.json()["keys"])


def test_garbage_token_requests_are_4xx(stack: TokenStack) -> None:
    for body in ("", "not a jws", "a.b.c", "e30.e30." + "A" * 86, "x" * 20000):
        response = post_request(stack, body)
        assert 400 <= response.status_code < 500, (body[:20], response.text)
        assert response.json()["error"]["code"]
