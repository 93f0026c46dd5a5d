"""Fresh-on-demand tokens: a relying party's nonce runs a round at once, bound into the quote."""

from __future__ import annotations

import os

import pytest

from geoattest.errors import (
    FreshRoundFailed,
)
from geoattest.jose import (
    b64url,
)
from tests.integration.tokens.calls import (
    first_agent,
    post_request,
    session_of,
    verify_for_svc,
)
from tests.support.token_requests import (
    signed_request,
)
from tests.support.token_stack import TokenStack, order
from tpm import parse_tpms_attest
from verifier.core.record import decode_record
from verifier.tokens.verify import VerifiedToken

pytestmark = [pytest.mark.redis]


# --- fresh rounds ---------------------------------------------------------------------------------


def test_a_relying_party_nonce_runs_a_fresh_round_bound_into_the_quote(stack: TokenStack) -> None:
    agent_id = first_agent(stack)
    sim = stack.runner.sims[agent_id]
    rp_nonce = os.urandom(16)
    before = stack.runner.store.get_agent(agent_id).records
    view = stack.client(agent_id).request(order(sim, nonce=b64url(rp_nonce)))
    verdict = verify_for_svc(stack, view.token, nonce=rp_nonce)
    assert isinstance(verdict, VerifiedToken), verdict
    assert verdict.record_seq > before  # a new round, recorded
    stored = stack.runner.records.get(agent_id, verdict.claims["geoattest.record"]["round_id"])  # type: ignore[index]
    evidence = decode_record(stored.canonical).evidence
    assert evidence is not None
    assert evidence.nonce.startswith(rp_nonce)
    assert len(evidence.nonce) == len(rp_nonce) + 16
    quoted = parse_tpms_attest(evidence.attest).extra_data
    from geoattest.wire import quote_qualifying_data

    assert quoted == quote_qualifying_data(evidence.nonce, None)


def test_a_fresh_round_that_fails_fails_the_agent_and_gives_no_token(stack: TokenStack) -> None:
    agent_id = first_agent(stack)
    sim = stack.runner.sims[agent_id]
    client = stack.client(agent_id)
    client.request(order(sim))
    sim.measure("/tmp/miner", content=b"not allowed")
    with pytest.raises(FreshRoundFailed, match="ima_entry_not_allowed"):
        client.request(order(sim, nonce=b64url(os.urandom(16))))
    assert stack.runner.state(agent_id) == "failed"


def test_a_nonce_of_the_wrong_size_is_refused(stack: TokenStack) -> None:
    agent_id = first_agent(stack)
    session_id, key = session_of(stack, agent_id)
    for nonce in (os.urandom(4), os.urandom(49)):
        response = post_request(
            stack, signed_request(agent_id, session_id, key, nonce=b64url(nonce))
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "token_request_invalid"
