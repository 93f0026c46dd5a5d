"""What the token-service tests ask of a running stack: its first agent, a token verified as the
relying party `svc` would, the status document once it holds, a raw token request, a session."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

import requests
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.token_requests import (
    open_session,
)
from tests.support.token_stack import TokenStack
from verifier.tokens.status import RevocationStatus, read_status
from verifier.tokens.verify import Expected, Rejected, VerifiedToken, verify_token


def first_agent(stack: TokenStack) -> str:
    return sorted(stack.runner.sims)[0]


def verify_for_svc(stack: TokenStack, token: str, **expect: object) -> VerifiedToken | Rejected:
    expected = Expected(audience="svc", issuer="https://verifier.test", **expect)  # type: ignore[arg-type]
    return verify_token(token, stack.keys(), expected, dt.datetime.now(dt.UTC))


def status_within(
    stack: TokenStack, seconds: float, holds: Callable[[RevocationStatus], bool]
) -> RevocationStatus:
    """The status document as soon as ``holds`` (polled; the listener re-signs it on events)."""
    deadline = time.monotonic() + seconds
    while True:
        status = read_status(stack.status(), stack.keys(), dt.datetime.now(dt.UTC))
        assert not isinstance(status, Rejected), status
        if holds(status) or time.monotonic() > deadline:
            return status
        time.sleep(0.02)


def post_request(stack: TokenStack, body: str) -> requests.Response:
    return requests.post(
        f"{stack.url}/v1/tokens",
        data=body,
        headers={"Content-Type": "application/jose"},
        timeout=10,
    )


def session_of(stack: TokenStack, agent_id: str) -> tuple[str, ec.EllipticCurvePrivateKey]:
    return open_session(stack.url, agent_id, stack.runner.sims[agent_id])
