"""TPM-bound token sessions and their attacks (foreign key, another agent's session, replay,
another TPM, a challenge reused, a reboot), and cnf keys proven by the workload."""

from __future__ import annotations

import json
import time

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from geoattest.errors import (
    CnfProofInvalid,
)
from geoattest.jose import (
    compact_json,
    encode_jws,
    es256_sign,
    public_jwk,
    thumbprint,
)
from geoattest.wire_tokens import (
    CNF_PROOF_TYP,
    CnfWire,
    PublicJwk,
)
from tests.integration.tokens.calls import (
    first_agent,
    post_request,
    session_of,
    verify_for_svc,
)
from tests.support.token_requests import (
    ask_challenge,
    post_session,
    session_body,
    session_quote,
    signed_request,
)
from tests.support.token_stack import TokenStack, order
from verifier.tokens.verify import VerifiedToken

pytestmark = [pytest.mark.redis]


# --- sessions: the agent proves it is the agent ---------------------------------------------------


def test_a_request_not_signed_by_the_session_key_is_refused(stack: TokenStack) -> None:
    agent_id = first_agent(stack)
    session_id, _ = session_of(stack, agent_id)
    forged = signed_request(agent_id, session_id, ec.generate_private_key(ec.SECP256R1()))
    response = post_request(stack, forged)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_request_signature_invalid"


def test_a_request_naming_another_agents_session_is_refused(stack: TokenStack) -> None:
    first, second = sorted(stack.runner.sims)
    session_id, key = session_of(stack, first)
    session_of(stack, second)  # the other agent has a session of its own
    response = post_request(stack, signed_request(second, session_id, key))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_session_unknown"


def test_a_replayed_request_is_refused(stack: TokenStack) -> None:
    agent_id = first_agent(stack)
    session_id, key = session_of(stack, agent_id)
    request = signed_request(agent_id, session_id, key)
    assert post_request(stack, request).status_code == 201
    again = post_request(stack, request)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "token_request_replayed"
    old = signed_request(agent_id, session_id, key, iat=int(time.time()) - 300)
    assert post_request(stack, old).json()["error"]["code"] == "token_request_replayed"


def test_a_session_quoted_by_another_tpm_is_refused(stack: TokenStack) -> None:
    first, second = sorted(stack.runner.sims)
    challenge = ask_challenge(stack.url, first)
    key = ec.generate_private_key(ec.SECP256R1())
    quoted = session_quote(stack.runner.sims[second], first, challenge, key)  # not first's AK
    response = post_session(stack.url, session_body(first, challenge["challenge"], key, quoted))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "token_session_refused"


def test_a_session_quote_binding_another_key_is_refused(stack: TokenStack) -> None:
    agent_id = first_agent(stack)
    challenge = ask_challenge(stack.url, agent_id)
    quoted_key, presented_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    quoted = session_quote(stack.runner.sims[agent_id], agent_id, challenge, quoted_key)
    response = post_session(
        stack.url, session_body(agent_id, challenge["challenge"], presented_key, quoted)
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "token_session_refused"


def test_a_challenge_is_used_once_and_only_for_its_agent(stack: TokenStack) -> None:
    first, second = sorted(stack.runner.sims)
    challenge = ask_challenge(stack.url, first)
    other = ask_challenge(stack.url, first)
    assert challenge["challenge"] != other["challenge"]
    key = ec.generate_private_key(ec.SECP256R1())

    def open_for(agent_id: str) -> requests.Response:
        quoted = session_quote(stack.runner.sims[agent_id], agent_id, challenge, key)
        return post_session(stack.url, session_body(agent_id, challenge["challenge"], key, quoted))

    assert open_for(second).json()["error"]["code"] == "token_challenge_unknown"
    assert open_for(first).status_code == 201
    assert open_for(first).json()["error"]["code"] == "token_challenge_unknown"


def test_a_reboot_needs_a_new_session(stack: TokenStack) -> None:
    agent_id = first_agent(stack)
    sim = stack.runner.sims[agent_id]
    client = stack.client(agent_id)
    client.request(order(sim))
    sim.reboot()
    sim.measure("/usr/bin/bash", content=b"bash")
    stack.attest(agent_id, rounds=2)  # rebooted, then a full round of the new boot
    assert stack.runner.state(agent_id) == "attested"
    view = client.request(order(sim))  # the old session is refused, a new one opens
    assert client._quoter.quotes == 2  # type: ignore[attr-defined]  # SimQuoter
    host = json.loads(__import__("base64").urlsafe_b64decode(view.token.split(".")[1] + "=="))[
        "submods"
    ]["host"]["geoattest.host"]
    assert host["reset_count"] == sim.tpm.reset_count
    verdict = verify_for_svc(stack, view.token)
    assert isinstance(verdict, VerifiedToken), verdict  # the new boot measured bash again


def test_a_session_of_an_earlier_boot_is_refused_even_without_the_revocation_channel(
    stack: TokenStack,
) -> None:
    """The listener normally drops the session when the reboot ends trust; with no listener,
    the session's boot still differs from the record's and the request is refused."""
    stack.app.extensions["geoattest.token_listener"].stop()
    agent_id = first_agent(stack)
    sim = stack.runner.sims[agent_id]
    session_id, key = session_of(stack, agent_id)
    assert post_request(stack, signed_request(agent_id, session_id, key)).status_code == 201
    sim.reboot()
    sim.measure("/usr/bin/bash", content=b"bash")
    stack.attest(agent_id, rounds=2)
    assert stack.runner.state(agent_id) == "attested"
    time.sleep(0.3)  # the snapshot (0.25 s) sees the new boot's round
    response = post_request(stack, signed_request(agent_id, session_id, key))
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "token_session_unknown"
    assert "rebooted" in response.json()["error"]["message"]


# --- cnf ------------------------------------------------------------------------------------------


def _cnf(key: ec.EllipticCurvePrivateKey, **claims: object) -> CnfWire:
    body: dict[str, object] = {"aud": "svc", "type": "por", "iat": int(time.time())}
    body.update(claims)
    proof = encode_jws(
        {"alg": "ES256", "typ": CNF_PROOF_TYP}, compact_json(body), lambda d: es256_sign(key, d)
    )
    return CnfWire(jwk=PublicJwk.model_validate(public_jwk(key.public_key())), proof=proof)


def test_a_proven_cnf_key_is_bound_and_an_unproven_one_refused(stack: TokenStack) -> None:
    agent_id = first_agent(stack)
    sim = stack.runner.sims[agent_id]
    key = ec.generate_private_key(ec.SECP256R1())
    view = stack.client(agent_id).request(order(sim, cnf=_cnf(key)))
    verdict = verify_for_svc(stack, view.token, cnf_jkt=thumbprint(key.public_key()))
    assert isinstance(verdict, VerifiedToken), verdict
    stolen = _cnf(key)
    other = ec.generate_private_key(ec.SECP256R1())
    swapped = CnfWire(
        jwk=PublicJwk.model_validate(public_jwk(other.public_key())), proof=stolen.proof
    )
    with pytest.raises(CnfProofInvalid):
        stack.client(agent_id).request(order(sim, cnf=swapped))
    with pytest.raises(CnfProofInvalid):
        stack.client(agent_id).request(order(sim, cnf=_cnf(key, aud="another-service")))


def test_a_session_quote_from_another_boot_is_refused(stack: TokenStack) -> None:
    """The node rebooted after its last passed round (its lease still runs): a quote of the new
    boot opens no session until a round of that boot has passed."""
    agent_id = first_agent(stack)
    sim = stack.runner.sims[agent_id]
    sim.reboot()
    challenge = ask_challenge(stack.url, agent_id)
    key = ec.generate_private_key(ec.SECP256R1())
    quoted = session_quote(sim, agent_id, challenge, key)
    response = post_session(stack.url, session_body(agent_id, challenge["challenge"], key, quoted))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "token_session_refused"
    assert "boot" in response.json()["error"]["message"]
