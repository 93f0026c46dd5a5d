"""Push rounds (ADR 19): the agent asks for a challenge, quotes with it, and posts the evidence.

A posted round is an ordinary round: the same ``RoundRunner`` (lock, fencing token, the pure
``verify_round``, record, chain, lease, hot state, events) with the challenge as its nonce and
the posted evidence as its ``EvidenceSource``. What push adds is checked here, before the round:

- the caller is the agent it names: the client certificate of the mTLS connection is the one
  registered for that agent, and the agent is a push agent (``PushCertificateRefused``);
- the challenge was issued to this agent, is used once, and has not expired
  (``PushChallenges.consume``; ``PushChallengeUnknown`` otherwise).

Push agents are never scheduled; the watchdog ends their lease like any agent's when posts stop.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from geoattest.errors import (
    AgentNotAttested,
    PushCertificateRefused,
    PushChallengeRateLimited,
    PushChallengeUnknown,
    PushRoundNotRun,
)
from geoattest.wire import EvidenceRequest, EvidenceResponse
from geoattest.wire_push import PushChallengeView, PushEvidencePost, PushVerdictView
from verifier.core.states import AgentMode
from verifier.engine.runner import RoundRunner, RoundTarget
from verifier.engine.runtime import VerifierRuntime

__all__ = ["PostedEvidence", "PushChallenges", "PushRounds"]

log = logging.getLogger(__name__)

CHALLENGE_BYTES = 32
KEY_SLACK_SECONDS = 5.0  # the key outlives the challenge: expiry is checked, not only evicted

# Compare-and-delete: the challenge is consumed only by the post that names it, atomically, so
# two posts racing with one challenge cannot both pass, and a wrong guess leaves it standing.
_CONSUME_LUA = """
local stored = redis.call('GET', KEYS[1])
if not stored then return false end
local sep = string.find(stored, '|', 1, true)
if not sep or string.sub(stored, 1, sep - 1) ~= ARGV[1] then return false end
redis.call('DEL', KEYS[1])
return string.sub(stored, sep + 1)
"""


def _challenge_key(agent_id: str) -> str:
    return f"geoattest:push-challenge:{agent_id}"


def _rate_key(agent_id: str, minute: int) -> str:
    return f"geoattest:push-rate:{agent_id}:{minute}"


class PushChallenges:
    """One outstanding challenge per agent in Redis (a new one replaces the old, so a caller
    cannot fill Redis), at most ``per_minute`` issued per agent per minute."""

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
        self._consume = client.register_script(_CONSUME_LUA)

    def issue(self, agent_id: str) -> tuple[bytes, float]:
        """A fresh challenge for ``agent_id`` and when it expires (unix time).

        Raises ``PushChallengeRateLimited`` past ``per_minute`` challenges this minute."""
        now = self._clock()
        rate_key = _rate_key(agent_id, int(now // 60))
        pipe = self._redis.pipeline()
        pipe.incr(rate_key)
        pipe.expire(rate_key, 120)
        issued = int(pipe.execute()[0])
        if issued > self._per_minute:
            raise PushChallengeRateLimited(
                f"agent {agent_id!r} asked for over {self._per_minute} challenges this minute"
            )
        nonce = secrets.token_bytes(CHALLENGE_BYTES)
        expires = now + self._lifetime
        ttl_ms = int((self._lifetime + KEY_SLACK_SECONDS) * 1000)
        self._redis.set(_challenge_key(agent_id), f"{nonce.hex()}|{expires!r}", px=ttl_ms)
        return nonce, expires

    def consume(self, agent_id: str, nonce_hex: str) -> bytes:
        """Use ``agent_id``'s challenge ``nonce_hex`` (once); returns its bytes.

        Raises ``PushChallengeUnknown`` when it is not this agent's outstanding challenge (never
        issued, issued to another agent, already used, replaced by a newer one) or expired."""
        stored = self._consume(keys=[_challenge_key(agent_id)], args=[nonce_hex.lower()])
        if stored is None:
            raise PushChallengeUnknown(
                "no such challenge for this agent (never issued to it, already used, or replaced)"
            )
        expires = float(stored.decode() if isinstance(stored, bytes) else stored)
        if self._clock() > expires:
            raise PushChallengeUnknown("the challenge expired before the evidence was posted")
        return bytes.fromhex(nonce_hex)


@dataclass(frozen=True, slots=True)
class PostedEvidence:
    """The ``EvidenceSource`` of a push round: the evidence the agent posted."""

    evidence: EvidenceResponse

    def fetch_evidence(
        self, agent_url: str, tls_certificate: bytes, request: EvidenceRequest
    ) -> EvidenceResponse:
        return self.evidence


class PushRounds:
    """Challenges and posted rounds for push agents, on the worker's round engine."""

    def __init__(
        self,
        runtime: Callable[[], VerifierRuntime],
        challenges: PushChallenges,
        *,
        lock_wait: float,
    ) -> None:
        self._runtime = runtime
        self._challenges = challenges
        self._lock_wait = lock_wait

    def challenge(self, agent_id: str, presented: bytes | None) -> PushChallengeView:
        """Issue the agent's next challenge with what its round must quote.

        Raises ``PushCertificateRefused``, ``AgentNotAttested`` (policy or keys unusable) and
        ``PushChallengeRateLimited``."""
        runtime = self._runtime()
        round_target = self._round_target(runtime, agent_id, presented)
        nonce, expires = self._challenges.issue(agent_id)
        live = runtime.hot.load(agent_id)
        policy = round_target.policy
        offset = live.memory.ima_offset_for(policy.ima_banks) if live is not None else 0
        request = EvidenceRequest(
            nonce=nonce.hex(),
            pcrs=policy.pcr_selection(),
            ima_offset=offset,
            include_location=policy.location is not None,
            include_boot_log=policy.boot_log_replay,
        )
        return PushChallengeView(
            request=request, expires_at=dt.datetime.fromtimestamp(expires, dt.UTC)
        )

    def post(self, post: PushEvidencePost, presented: bytes | None) -> PushVerdictView:
        """Judge and record the posted evidence as a round over the consumed challenge.

        Raises ``PushCertificateRefused``, ``PushChallengeUnknown``, ``AgentNotAttested`` and
        ``PushRoundNotRun`` (paused or failed agent, or its lock held too long)."""
        runtime = self._runtime()
        round_target = self._round_target(runtime, post.agent_id, presented)
        nonce = self._challenges.consume(post.agent_id, post.nonce)
        runner: RoundRunner = runtime.runner
        report = runner.run(
            round_target,
            nonce=nonce,
            lock_wait=self._lock_wait,
            source=PostedEvidence(post.evidence),
        )
        if report is None:
            raise PushRoundNotRun(
                f"agent {post.agent_id!r} was not judged (paused or failed, or another round "
                f"held it for over {self._lock_wait:.1f} s)"
            )
        result = report.result
        committed = report.committed
        state = committed.record.to_state.value if committed is not None else "unchanged"
        reason = report.fault or result.reason
        return PushVerdictView(
            agent_id=post.agent_id,
            outcome=result.outcome.value,
            state=state,
            reason=reason.value if reason is not None else None,
            message=result.message,
            record_seq=committed.record.seq if committed is not None else None,
        )

    @staticmethod
    def _round_target(
        runtime: VerifierRuntime, agent_id: str, presented: bytes | None
    ) -> RoundTarget:
        fleet = runtime.fleet()
        target = fleet.targets.get(agent_id)
        registered = target.tls_certificate if target is not None else b""
        if (
            target is None
            or presented is None
            or target.mode is not AgentMode.PUSH
            or not hmac.compare_digest(
                hashlib.sha256(presented).digest(), hashlib.sha256(registered).digest()
            )
        ):
            log.warning("push call for agent %s refused: not its registered certificate", agent_id)
            raise PushCertificateRefused(
                f"the client certificate is not the one registered for push agent {agent_id!r}"
            )
        policy, ak = fleet.policies.get(target.policy_name), fleet.aks.get(agent_id)
        if policy is None or ak is None:
            raise AgentNotAttested(f"agent {agent_id!r} cannot be judged now (policy or keys)")
        return RoundTarget(
            target=target,
            ak=ak,
            policy=policy,
            location_key=fleet.location_keys.get(agent_id),
            receiver=fleet.receivers.get(agent_id),
        )
