"""Token sessions: how an agent proves, with its TPM, that a token request is its own (ADR 8).

1. ``challenge(agent)``: 32 random bytes, single use, valid ``CHALLENGE_TTL`` seconds (Redis).
2. ``open(...)``: the agent quotes with its AK, qualifying data
   ``token_session_qualifying_data(agent, challenge, thumbprint(session key))``. The quote must
   verify with the AK the registrar proved, bind this challenge (consumed here) and this key, and
   come from the boot of the agent's last passed round (same resetCount and restartCount, clock
   not behind). The session key is then the agent's for ``lifetime`` (one session per agent; a
   new one replaces the old).
3. Every token request is a JWS by the session key (``kid`` = session id) with a fresh ``iat``
   and a ``jti`` used once (``claim_request``).

The AK is restricted: it signs only what the TPM produced (quotes, certifications), so it cannot
sign a request itself; a quote per request would cost a TPM command per token. A session costs
one quote per agent per ``lifetime`` (or per agent restart), and each request one ES256 check.
Sessions are dropped when the agent's trust ends (``forget``, from the revocation channel).
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import redis
from cryptography.hazmat.primitives.asymmetric import ec
from redis.client import Pipeline

from geoattest.errors import (
    GeoattestError,
    TokenChallengeUnknown,
    TokenSessionRefused,
)
from geoattest.jose import jwk_public_key, public_jwk, thumbprint
from geoattest.pcr_banks import PcrBank
from geoattest.wire_tokens import TokenSessionRequest, token_session_qualifying_data
from tpm import Alg, ClockInfo, TpmPublic, bank_alg, verify_quote

__all__ = ["CHALLENGE_TTL", "Session", "TokenSessions"]

CHALLENGE_TTL = 60
CHALLENGE_BYTES = 32
REQUEST_ID_TTL = 180  # longer than the iat window on both sides


def _challenge_key(agent_id: str, challenge: bytes) -> str:
    return f"geoattest:token-challenge:{agent_id}:{challenge.hex()}"


def _session_key(agent_id: str) -> str:
    return f"geoattest:token-session:{agent_id}"


def _request_key(agent_id: str, jti: str) -> str:
    return f"geoattest:token-request:{agent_id}:{jti}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    agent_id: str
    session_id: str
    public: ec.EllipticCurvePublicKey
    reset_count: int
    restart_count: int
    expires_at: float  # unix time


class TokenSessions:
    def __init__(
        self, client: redis.Redis, *, lifetime: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._redis = client
        self._lifetime = lifetime
        self._clock = clock
        self._cache: dict[str, Session] = {}
        self._lock = threading.Lock()

    def challenge(self, agent_id: str) -> tuple[bytes, dt.datetime]:
        challenge = os.urandom(CHALLENGE_BYTES)
        self._redis.set(_challenge_key(agent_id, challenge), b"1", ex=CHALLENGE_TTL)
        return challenge, dt.datetime.fromtimestamp(self._clock() + CHALLENGE_TTL, dt.UTC)

    def open(self, request: TokenSessionRequest, *, ak: TpmPublic, boot: ClockInfo) -> Session:
        """Check the session quote (module docstring) and store the session.

        ``boot``: the clock of the agent's last passed round's quote. Raises
        ``TokenChallengeUnknown`` for a challenge not issued, used or expired, and
        ``TokenSessionRefused`` for a quote that does not verify or binds something else."""
        agent_id = request.agent_id
        challenge = bytes.fromhex(request.challenge)
        if not self._redis.getdel(_challenge_key(agent_id, challenge)):
            raise TokenChallengeUnknown("no such challenge for this agent (used or expired)")
        try:
            public = jwk_public_key(request.public_jwk.members())
            result = verify_quote(
                ak=ak,
                attest=request.quote.attest,
                signature=request.quote.signature,
                nonce=token_session_qualifying_data(agent_id, challenge, thumbprint(public)),
                pcr_values=_pcr_values(request.pcrs),
            )
        except (GeoattestError, KeyError, ValueError) as e:
            message = e.message if isinstance(e, GeoattestError) else str(e)
            raise TokenSessionRefused(f"the session quote does not hold: {message}") from e
        clock = result.clock_info
        if (clock.reset_count, clock.restart_count) != (boot.reset_count, boot.restart_count):
            raise TokenSessionRefused(
                f"the session quote comes from boot {clock.reset_count}/{clock.restart_count}; "
                f"the last passed round was of {boot.reset_count}/{boot.restart_count} (a round "
                "of the new boot must pass first)"
            )
        if clock.clock < boot.clock:
            raise TokenSessionRefused("the session quote's TPM clock is behind the last round's")
        session = Session(
            agent_id=agent_id,
            session_id=secrets.token_urlsafe(16),
            public=public,
            reset_count=clock.reset_count,
            restart_count=clock.restart_count,
            expires_at=self._clock() + self._lifetime,
        )
        body = {
            "session_id": session.session_id,
            "jwk": public_jwk(public),
            "reset_count": session.reset_count,
            "restart_count": session.restart_count,
            "expires_at": session.expires_at,
        }
        self._redis.set(_session_key(agent_id), json.dumps(body), ex=int(self._lifetime) + 1)
        with self._lock:
            self._cache[agent_id] = session
        return session

    def get(self, agent_id: str, session_id: str) -> Session | None:
        """The agent's live session if its id is ``session_id`` (cached; Redis on a miss, so a
        session opened through another API process is found too)."""
        now = self._clock()
        with self._lock:
            cached = self._cache.get(agent_id)
        if cached is not None and cached.session_id == session_id and cached.expires_at > now:
            return cached
        raw = self._redis.get(_session_key(agent_id))
        if raw is None:
            return None
        body = json.loads(raw)
        if not hmac.compare_digest(str(body["session_id"]), session_id):
            return None
        session = Session(
            agent_id=agent_id,
            session_id=str(body["session_id"]),
            public=jwk_public_key(body["jwk"]),
            reset_count=int(body["reset_count"]),
            restart_count=int(body["restart_count"]),
            expires_at=float(body["expires_at"]),
        )
        if session.expires_at <= now:
            return None
        with self._lock:
            self._cache[agent_id] = session
        return session

    def claim_request(self, agent_id: str, jti: str) -> bool:
        """True the first time a request id is used (False: a replay)."""
        return bool(self._redis.set(_request_key(agent_id, jti), b"1", nx=True, ex=REQUEST_ID_TTL))

    @staticmethod
    def queue_claim(pipe: Pipeline, agent_id: str, jti: str) -> None:
        """``claim_request`` as a command of ``pipe``; its result (truthy: first use) comes
        back with the pipeline's."""
        pipe.set(_request_key(agent_id, jti), b"1", nx=True, ex=REQUEST_ID_TTL)

    def forget(self, agent_id: str) -> None:
        """Drop the agent's session (its trust ended): it must open a new one."""
        with self._lock:
            self._cache.pop(agent_id, None)
        self._redis.delete(_session_key(agent_id))

    def forget_cached(self, agent_id: str) -> None:
        with self._lock:
            self._cache.pop(agent_id, None)


def _pcr_values(pcrs: Mapping[PcrBank, Mapping[str, str]]) -> dict[Alg, dict[int, bytes]]:
    return {
        bank_alg(bank): {int(index): bytes.fromhex(value) for index, value in values.items()}
        for bank, values in pcrs.items()
    }
