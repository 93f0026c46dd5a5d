"""What an agent's token client sends, written out by hand: a token session's body (the challenge
quoted with the session key's thumbprint as qualifying data) and a signed token request (an ES256
JWS over the claims, keyed by the session id). The tests and the token benchmark both use them.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

import requests
from cryptography.hazmat.primitives.asymmetric import ec

from agent.tpm_device import TpmQuote
from geoattest.jose import compact_json, encode_jws, es256_sign, public_jwk, thumbprint
from geoattest.pcr_banks import parse_bank
from geoattest.wire import QuoteWire
from geoattest.wire_tokens import TOKEN_REQUEST_TYP, PublicJwk, token_session_qualifying_data
from tests.support.agent_simulator import AgentSimulator

BASH = hashlib.sha256(b"bash").digest()  # the workload the simulated agents measured


def session_body(
    agent_id: str, challenge: str, key: ec.EllipticCurvePrivateKey, quoted: TpmQuote
) -> dict[str, object]:
    """The ``POST /v1/token-sessions`` body for ``quoted`` (a quote of the challenge)."""
    return {
        "agent_id": agent_id,
        "challenge": challenge,
        "public_jwk": PublicJwk.model_validate(public_jwk(key.public_key())).model_dump(),
        "quote": QuoteWire(attest=quoted.attest, signature=quoted.signature).model_dump(
            mode="json"
        ),
        "pcrs": {
            bank: {str(i): v.hex() for i, v in values.items()}
            for bank, values in quoted.pcrs.items()
        },
    }


def session_quote(
    sim: AgentSimulator,
    agent_id: str,
    challenge: dict[str, Any],
    key: ec.EllipticCurvePrivateKey,
) -> TpmQuote:
    """``sim``'s quote of a session challenge (``POST /v1/token-sessions/challenge`` answer)
    bound to ``key``: the qualifying data the verifier expects."""
    nonce = token_session_qualifying_data(
        agent_id, bytes.fromhex(challenge["challenge"]), thumbprint(key.public_key())
    )
    pcrs = {parse_bank(bank): indices for bank, indices in challenge["pcrs"].items()}
    return sim.tpm.quote(nonce, pcrs)


def ask_challenge(url: str, agent_id: str) -> dict[str, Any]:
    """``POST /v1/token-sessions/challenge`` for ``agent_id``: the JSON answer as it came (the
    challenge and what to quote)."""
    answer: dict[str, Any] = requests.post(
        f"{url}/v1/token-sessions/challenge", json={"agent_id": agent_id}, timeout=10
    ).json()
    return answer


def post_session(url: str, body: dict[str, object]) -> requests.Response:
    """``POST /v1/token-sessions`` with ``body`` (``session_body``), the answer as it came."""
    return requests.post(f"{url}/v1/token-sessions", json=body, timeout=10)


def open_session(
    url: str, agent_id: str, sim: AgentSimulator
) -> tuple[str, ec.EllipticCurvePrivateKey]:
    """Open a token session for ``agent_id`` at the verifier ``url``: (session id, its key).
    Raises ``requests.HTTPError`` when the verifier refuses."""
    challenge = ask_challenge(url, agent_id)
    key = ec.generate_private_key(ec.SECP256R1())
    quoted = session_quote(sim, agent_id, challenge, key)
    response = post_session(url, session_body(agent_id, challenge["challenge"], key, quoted))
    response.raise_for_status()
    return str(response.json()["session_id"]), key


def signed_request(
    agent_id: str, session_id: str, key: ec.EllipticCurvePrivateKey, **fields: object
) -> str:
    """A compact JWS token request (a PoR for ``BASH`` by default); ``fields`` replace claims."""
    claims: dict[str, object] = {
        "agent_id": agent_id,
        "type": "por",
        "audience": "svc",
        "workload": {"sha256": BASH.hex()},
        "iat": int(time.time()),
        "jti": secrets.token_urlsafe(16),
    }
    claims.update(fields)
    header = {"alg": "ES256", "typ": TOKEN_REQUEST_TYP, "kid": session_id}
    return encode_jws(header, compact_json(claims), lambda data: es256_sign(key, data))
