"""Push challenges: fresh, single-use, unpredictable nonces bound to one agent (ADR 19).

A challenge is 32 bytes from ``secrets``, kept in Redis under a key naming the agent and the
nonce, with the round it asks for and a lifetime (``push_challenge_seconds``). ``consume`` takes
it with ``GETDEL``: one atomic step, so a nonce answers one post, only the agent's own, and only
before it expires. Issuing is limited per agent per minute (a counter with a one-minute expiry)
so that a caller, even an authenticated one, cannot fill Redis with live challenges.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections.abc import Callable

import redis

from geoattest.errors import PushChallengeRateLimited, PushChallengeUnknown
from geoattest.wire import EvidenceRequest

__all__ = ["CHALLENGE_BYTES", "PushChallenges"]

CHALLENGE_BYTES = 32


def _challenge_key(agent_id: str, nonce: bytes) -> str:
    return f"geoattest:push-challenge:{agent_id}:{nonce.hex()}"


def _rate_key(agent_id: str, minute: int) -> str:
    return f"geoattest:push-rate:{agent_id}:{minute}"


class PushChallenges:
    def __init__(
        self,
        client: redis.Redis,
        *,
        lifetime: float,
        per_minute: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self._lifetime = lifetime
        self._per_minute = per_minute
        self._clock = clock

    @staticmethod
    def new_nonce() -> bytes:
        return secrets.token_bytes(CHALLENGE_BYTES)

    def issue(self, agent_id: str, request: EvidenceRequest) -> dt.datetime:
        """Store ``request`` (whose nonce is the challenge) for ``agent_id``; its expiry.

        Raises ``PushChallengeRateLimited`` past ``per_minute`` challenges this minute."""
        now = self._clock()
        rate = _rate_key(agent_id, int(now // 60))
        pipe = self._redis.pipeline()
        pipe.incr(rate)
        pipe.expire(rate, 120)
        count = int(pipe.execute()[0])
        if count > self._per_minute:
            raise PushChallengeRateLimited(
                f"agent {agent_id!r} asked for over {self._per_minute} challenges this minute"
            )
        nonce = bytes.fromhex(request.nonce)
        self._redis.set(
            _challenge_key(agent_id, nonce),
            request.model_dump_json(),
            px=max(int(self._lifetime * 1000), 1),
        )
        return dt.datetime.fromtimestamp(now + self._lifetime, dt.UTC)

    def consume(self, agent_id: str, nonce: bytes) -> EvidenceRequest:
        """The round the challenge asked for, deleted in the same step.

        Raises ``PushChallengeUnknown`` for a nonce never issued to ``agent_id``, already used
        or expired."""
        raw = self._redis.getdel(_challenge_key(agent_id, nonce))
        if raw is None:
            raise PushChallengeUnknown(
                f"no live challenge {nonce.hex()[:16]}… for agent {agent_id!r} (never issued "
                "to it, already used, or expired)"
            )
        return EvidenceRequest.model_validate_json(raw)
