"""Push rounds (ADR 19): the agent asks for a challenge, quotes with it, and posts the evidence.

A posted round is an ordinary round: the same ``RoundRunner`` (lock, fencing token, the pure
``verify_round``, record, chain, lease, hot state, events) with the challenge as its nonce and
the posted evidence as its ``EvidenceSource``. What push adds is checked here, before the round:

- the caller is the agent it names: the client certificate of the mTLS connection is the one
  registered for that agent, and the agent is a push agent (``PushCertificateRefused``);
- the challenge was issued to this agent, is used once, and has not expired
  (``PushChallenges.take``; ``PushChallengeUnknown`` otherwise), and the round still asks what
  the challenge asked (``PushChallengeStale`` otherwise: another round moved the IMA offset on).

Both are checked before an evidence body is read.

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
    AgentProtocolMismatch,
    PushCertificateRefused,
    PushChallengeRateLimited,
    PushChallengeStale,
    PushChallengeUnknown,
    PushRoundNotRun,
)
from geoattest.wire import EvidenceRequest, EvidenceResponse
from geoattest.wire_push import (
    PushChallengeRequest,
    PushChallengeView,
    PushEvidencePost,
    PushVerdictView,
)
from verifier.core.round_types import RoundMemory
from verifier.core.states import POLLED_STATES, AgentMode
from verifier.engine.fleet import FleetConfig
from verifier.engine.judge import round_request
from verifier.engine.round_target import RoundTarget
from verifier.engine.runner import RoundRunner
from verifier.engine.runtime import VerifierRuntime

__all__ = ["Challenge", "PostedEvidence", "PushChallenges", "PushRounds", "asks_digest"]

log = logging.getLogger(__name__)

CHALLENGE_BYTES = 32
KEY_SLACK_SECONDS = 5.0  # the key outlives the challenge: expiry is checked, not only evicted

# Get-and-delete: any post of the agent uses up its outstanding challenge, right nonce or
# wrong, before its body is read; so two posts racing with one challenge cannot both pass, and
# every evidence body the listener parses costs its sender a (rate-limited) challenge.
_TAKE_LUA = """
local stored = redis.call('GET', KEYS[1])
if stored then redis.call('DEL', KEYS[1]) end
return stored
"""


# Count the challenge against the agent's minute and store it, in one round trip: a caller
# past its limit stores nothing (its outstanding challenge, if any, stays).
_ISSUE_LUA = """
local issued = redis.call('INCR', KEYS[1])
if issued == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
if issued > tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
return 1
"""
RATE_KEY_SECONDS = 120  # a minute's counter outlives its minute


def _challenge_key(agent_id: str) -> str:
    return f"geoattest:push-challenge:{agent_id}"


def _rate_key(agent_id: str, minute: int) -> str:
    return f"geoattest:push-rate:{agent_id}:{minute}"


def asks_digest(request: EvidenceRequest) -> str:
    """What a round asks for apart from its nonce (PCRs, IMA offset, location, boot log), as a
    digest: a push round runs only when it still asks what the challenge asked."""
    asked = request.model_dump_json(exclude={"nonce"})
    return hashlib.sha256(asked.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Challenge:
    """An issued challenge as stored: its nonce, expiry (unix time) and ``asks_digest``."""

    nonce: bytes
    expires: float
    asks: str

    def stored(self) -> str:
        return f"{self.nonce.hex()}|{self.expires!r}|{self.asks}"

    @classmethod
    def parse(cls, stored: str) -> Challenge:
        nonce, expires, asks = stored.split("|")
        return cls(nonce=bytes.fromhex(nonce), expires=float(expires), asks=asks)


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
        self._take = client.register_script(_TAKE_LUA)
        self._issue = client.register_script(_ISSUE_LUA)

    def issue(
        self, agent_id: str, asks: Callable[[bytes], EvidenceRequest]
    ) -> tuple[EvidenceRequest, float]:
        """A fresh challenge for ``agent_id``: the request ``asks`` makes of its nonce, and when
        it expires (unix time).

        Raises ``PushChallengeRateLimited`` past ``per_minute`` challenges this minute."""
        now = self._clock()
        nonce = secrets.token_bytes(CHALLENGE_BYTES)
        request = asks(nonce)
        challenge = Challenge(nonce=nonce, expires=now + self._lifetime, asks=asks_digest(request))
        ttl_ms = int((self._lifetime + KEY_SLACK_SECONDS) * 1000)
        stored = self._issue(
            keys=[_rate_key(agent_id, int(now // 60)), _challenge_key(agent_id)],
            args=[RATE_KEY_SECONDS, self._per_minute, challenge.stored(), ttl_ms],
        )
        if not stored:
            raise PushChallengeRateLimited(
                f"agent {agent_id!r} asked for over {self._per_minute} challenges this minute"
            )
        return request, challenge.expires

    def take(self, agent_id: str) -> Challenge:
        """Use up ``agent_id``'s outstanding challenge (whatever the post then says).

        Raises ``PushChallengeUnknown`` when it has none (never issued, already used) or it
        expired."""
        stored = self._take(keys=[_challenge_key(agent_id)])
        if stored is None:
            raise PushChallengeUnknown(
                "no outstanding challenge for this agent (never issued, or already used)"
            )
        challenge = Challenge.parse(stored.decode() if isinstance(stored, bytes) else stored)
        if self._clock() > challenge.expires:
            raise PushChallengeUnknown("the challenge expired before the evidence was posted")
        return challenge


@dataclass(frozen=True, slots=True)
class PostedEvidence:
    """The ``EvidenceSource`` of a push round: the evidence the agent posted, for the request
    its challenge asked (``asks``). The runner builds the round's request under the agent's
    lock; when a round of the same agent committed since the challenge was issued, that request
    asks from another IMA offset than the agent answered, and judging would fail an honest agent
    (``ImaLogRewound``): the round is a protocol fault instead, never a verdict on the agent."""

    evidence: EvidenceResponse
    asks: str

    def fetch_evidence(
        self, agent_url: str, tls_certificate: bytes, request: EvidenceRequest
    ) -> EvidenceResponse:
        if not hmac.compare_digest(asks_digest(request), self.asks):
            raise AgentProtocolMismatch(
                "the round moved on since this push challenge was issued; ask for a new one"
            )
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
        self._by_certificate: tuple[int, dict[bytes, str]] = (-1, {})

    def _caller(self, fleet: FleetConfig, presented: bytes | None) -> str:
        """The push agent whose registered certificate the caller presented.

        Raises ``PushCertificateRefused`` (no certificate, or none of a push agent's)."""
        version, index = self._by_certificate
        if version != fleet.version:
            index = {
                hashlib.sha256(t.tls_certificate).digest(): t.agent_id
                for t in fleet.targets.values()
                if t.mode is AgentMode.PUSH
            }
            self._by_certificate = (fleet.version, index)
        agent_id = index.get(hashlib.sha256(presented).digest()) if presented else None
        if agent_id is None:
            log.warning("push call refused: not a push agent's registered certificate")
            raise PushCertificateRefused(
                "the client certificate is not one registered for a push agent"
            )
        return agent_id

    def challenge(
        self, presented: bytes | None, read: Callable[[], PushChallengeRequest]
    ) -> PushChallengeView:
        """Issue the caller's next challenge with what its round must quote.

        The caller is checked before ``read`` parses the body, and the body must name the
        caller. One fleet snapshot serves the whole request (each is a Redis round trip).
        Raises ``PushCertificateRefused``, ``AgentNotAttested`` (policy or keys unusable),
        ``PushRoundNotRun`` (paused or failed: no round would run) and
        ``PushChallengeRateLimited``."""
        runtime = self._runtime()
        fleet = runtime.fleet()
        agent_id = self._caller(fleet, presented)
        asked = read()
        if asked.agent_id != agent_id:
            raise PushCertificateRefused(
                f"the client certificate is not the one registered for push agent "
                f"{asked.agent_id!r}"
            )
        round_target = self._round_target(fleet, agent_id, presented)
        live = runtime.hot.load(agent_id)
        state = live.state if live is not None else round_target.target.state
        if state not in POLLED_STATES:
            raise PushRoundNotRun(f"agent {agent_id!r} is {state.value}: no round runs for it")
        memory = live.memory if live is not None else RoundMemory()
        request, expires = self._challenges.issue(
            agent_id, lambda nonce: round_request(round_target.policy, memory, nonce)
        )
        return PushChallengeView(
            request=request, expires_at=dt.datetime.fromtimestamp(expires, dt.UTC)
        )

    def post(
        self, presented: bytes | None, read: Callable[[], PushEvidencePost]
    ) -> PushVerdictView:
        """Judge and record the posted evidence as a round over the agent's challenge.

        The caller and its challenge are checked before ``read`` parses the body: a peer
        without a push agent's certificate, or without an outstanding challenge, never has its
        body read. Raises ``PushCertificateRefused``, ``PushChallengeUnknown``,
        ``PushChallengeStale``, ``AgentNotAttested`` and ``PushRoundNotRun`` (paused or failed
        agent, or its lock held too long)."""
        runtime = self._runtime()
        # Taken before the body is read and used for the whole round, as a pull round uses the
        # snapshot of its dispatch: a change an operator makes meanwhile applies to the next.
        fleet = runtime.fleet()
        agent_id = self._caller(fleet, presented)
        challenge = self._challenges.take(agent_id)
        post = read()
        if post.agent_id != agent_id:
            raise PushCertificateRefused(
                f"the client certificate is not the one registered for push agent {post.agent_id!r}"
            )
        if not hmac.compare_digest(post.nonce.lower(), challenge.nonce.hex()):
            raise PushChallengeUnknown(
                "not this agent's outstanding challenge (another agent's, or replaced); "
                "the challenge is used up"
            )
        round_target = self._round_target(fleet, agent_id, presented)
        live = runtime.hot.load(agent_id)
        memory = live.memory if live is not None else RoundMemory()
        if asks_digest(round_request(round_target.policy, memory, challenge.nonce)) != (
            challenge.asks
        ):
            raise PushChallengeStale(
                f"agent {agent_id!r}: a round committed or the policy changed since the "
                "challenge was issued; ask for a new one"
            )
        runner: RoundRunner = runtime.runner
        report = runner.run(
            round_target,
            nonce=challenge.nonce,
            lock_wait=self._lock_wait,
            source=PostedEvidence(post.evidence, challenge.asks),
        )
        if report is None:
            raise PushRoundNotRun(
                f"agent {agent_id!r} was not judged (paused or failed, or another round "
                f"held it for over {self._lock_wait:.1f} s)"
            )
        result = report.result
        committed = report.committed
        state = committed.record.to_state.value if committed is not None else "unchanged"
        reason = report.fault or result.reason
        return PushVerdictView(
            agent_id=agent_id,
            outcome=result.outcome.value,
            state=state,
            reason=reason.value if reason is not None else None,
            message=result.message,
            record_seq=committed.record.seq if committed is not None else None,
        )

    @staticmethod
    def _round_target(fleet: FleetConfig, agent_id: str, presented: bytes | None) -> RoundTarget:
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
