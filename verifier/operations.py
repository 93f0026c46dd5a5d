"""Operator actions on the verified fleet: policies, adding agents, pause/resume/re-admit/remove.

Every change bumps the configuration version in Redis, so workers pick it up at their next batch.
A state change by an operator is a verdict like a round's: taken under the agent's lock and its
fencing token, committed with an evidence record (kind ``operator``) that continues the chain.
Every other change (policies, adding, refreshing, re-assigning or removing an agent) goes into
the transparency log as an audit entry, in the transaction that makes it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from geoattest.errors import (
    AgentCertificateInvalid,
    AgentNotActive,
    AgentUrlInvalid,
    Conflict,
)
from geoattest.pinned_certificate import CertificateNotPinnable, pinnable_certificate
from geoattest.registrar_client import RegistrarClient
from geoattest.wire import PolicyDocument
from geofence import ZoneSet
from verifier.core.identity import IdentityTrust, check_identity
from verifier.core.policy import (
    canonical_document,
    document_digest,
    policy_from_document,
    reloaded_document,
)
from verifier.core.reasons import Reason
from verifier.core.record_types import RecordKind
from verifier.core.round_record import RecordOrigin, action_record
from verifier.core.round_types import RoundMemory
from verifier.core.states import AgentMode, AgentState
from verifier.engine.fetch import parse_agent_url
from verifier.notify.revocations import EventPublisher
from verifier.storage.config_changes import Audit
from verifier.storage.hot_state import HotState, LiveStatus
from verifier.storage.policies import PolicySummary
from verifier.storage.sql import AgentTarget, VerifiedAgentView, VerifierStore
from verifier.storage.verdicts import Committed, Refused, VerdictDraft, VerdictStore


@dataclass(frozen=True, slots=True, kw_only=True)
class ActiveIdentity:
    """What the verifier takes from the registrar's record of an active agent."""

    ak_public: bytes
    agent_url: str
    tls_certificate: bytes
    location_key_public: bytes | None  # certified by the AK at the registrar (geofencing nodes)
    ek_certificate_sha256: bytes | None = None  # of the EK certificate the registrar holds
    gnss_receiver: bytes | None = None  # the receiver enrolled with it (canonical JSON)


OPERATOR_LOCK_TTL = 30.0
OPERATOR_LOCK_WAIT = 20.0  # longer than any round (its HTTP fetch has a total deadline)


class Operations:
    def __init__(
        self,
        *,
        store: VerifierStore,
        verdicts: VerdictStore,
        hot: HotState,
        registrar: RegistrarClient,
        identity_trust: IdentityTrust,
        origin: RecordOrigin,
        zones: ZoneSet | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._zones = zones
        self._store = store
        self._verdicts = verdicts
        self._hot = hot
        self._registrar = registrar
        self._identity_trust = identity_trust
        self._origin = origin
        self._clock = clock
        self._publish = EventPublisher(hot=hot, enqueue_delivery=_no_deliveries)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def _audit(self) -> Audit:
        # The actor is the verifier until operators have API keys of their own (issue 14).
        return Audit(actor=f"operator@{self._origin.verifier_id}", at=self._now())

    def _active_identity(self, agent_id: str) -> ActiveIdentity:
        """The registrar's record of ``agent_id``, checked as ``check_identity`` says (signed by
        the pinned registrar, EK re-validated against the verifier's own trust store), active and
        with an evidence API the rounds can reach."""
        view = self._registrar.get_agent(agent_id)
        checked = check_identity(view, self._identity_trust, asked_for=agent_id, now=self._now())
        if view.state != "active":
            raise AgentNotActive(f"agent {agent_id!r} is {view.state} at the registrar")
        if checked.agent_url is None or checked.tls_certificate is None:
            raise AgentNotActive(
                f"agent {agent_id!r} enrolled without an evidence API (agent_url, TLS certificate)"
            )
        try:
            parse_agent_url(checked.agent_url)
        except AgentUrlInvalid as e:
            raise AgentNotActive(f"agent {agent_id!r}: {e.message}") from e
        try:  # it becomes a trust anchor, for pull rounds and the push listener alike
            pinnable_certificate(checked.tls_certificate)
        except CertificateNotPinnable as e:
            raise AgentCertificateInvalid(
                f"agent {agent_id!r} registered a TLS certificate that cannot be pinned: {e}"
            ) from e
        return ActiveIdentity(
            ak_public=checked.ak_public,
            agent_url=checked.agent_url,
            tls_certificate=checked.tls_certificate,
            location_key_public=checked.location_key_public,
            ek_certificate_sha256=checked.ek_certificate_sha256,
            gnss_receiver=checked.gnss_receiver,
        )

    def _refuse_shared_push_certificate(self, agent_id: str, certificate: bytes) -> None:
        """A push agent is known by its certificate alone (the listener maps a certificate to
        one agent before it reads a body), so no two push agents may share one."""
        for other in self._store.targets().values():
            if (
                other.agent_id != agent_id
                and other.mode is AgentMode.PUSH
                and other.tls_certificate == certificate
            ):
                raise AgentCertificateInvalid(
                    f"agent {agent_id!r} registered the TLS certificate of push agent "
                    f"{other.agent_id!r}: a push agent needs its own"
                )

    def put_policy(self, name: str, document: PolicyDocument) -> PolicySummary:
        """Validate (``PolicyInvalid`` names the problem) and store; takes effect next round.

        The document is checked exactly as workers will reload it: rendered to its canonical
        bytes, parsed back from them and built into a policy. What cannot survive that trip
        (NaN, infinity, an empty bank list, a bad threshold) is refused now, not at reload."""
        canonical = canonical_document(document)
        reloaded = reloaded_document(document)
        digest = document_digest(canonical)
        policy_from_document(name, 0, reloaded, self._zones, digest=digest)
        stored = self._store.put_policy(
            name,
            canonical,
            digest,
            self._now(),
            max_age_seconds=reloaded.max_age_seconds,
            audit=self._audit(),
        )
        self._hot.bump_config_version()
        return stored

    def delete_policy(self, name: str) -> None:
        self._store.delete_policy(name, audit=self._audit())
        self._hot.bump_config_version()

    def add_agent(
        self, agent_id: str, policy_name: str, mode: AgentMode = AgentMode.PULL
    ) -> VerifiedAgentView:
        """Take an enrolled, active agent under verification; a pull agent's first round is due
        at once, a push agent's runs when it posts (ADR 19)."""
        identity = self._active_identity(agent_id)
        if mode is AgentMode.PUSH:
            self._refuse_shared_push_certificate(agent_id, identity.tls_certificate)
        target = AgentTarget(
            agent_id=agent_id,
            policy_name=policy_name,
            ak_public=identity.ak_public,
            agent_url=identity.agent_url,
            tls_certificate=identity.tls_certificate,
            location_key_public=identity.location_key_public,
            state=AgentState.REGISTERED,
            ek_certificate_sha256=identity.ek_certificate_sha256,
            gnss_receiver=identity.gnss_receiver,
            mode=mode,
        )
        self._store.add_agent(target, self._now(), audit=self._audit())
        self._hot.store(agent_id, LiveStatus(state=AgentState.REGISTERED, memory=RoundMemory()))
        self._hot.bump_config_version()
        if mode is AgentMode.PULL:
            self._hot.schedule(agent_id, self._clock())
        return self._store.get_agent(agent_id)

    def refresh(self, agent_id: str) -> VerifiedAgentView:
        """Take the agent's identity again from the registrar (it re-enrolled: new API address or
        certificate, a new AK, or a new GNSS receiver: this is how an operator accepts one). A new
        AK starts the agent over, as a new identity must."""
        current = self._store.get_agent(agent_id)
        identity = self._active_identity(agent_id)
        if current.mode is AgentMode.PUSH:
            self._refuse_shared_push_certificate(agent_id, identity.tls_certificate)
        changed_ak = self._store.update_identity(
            agent_id,
            ak_public=identity.ak_public,
            agent_url=identity.agent_url,
            tls_certificate=identity.tls_certificate,
            location_key_public=identity.location_key_public,
            ek_certificate_sha256=identity.ek_certificate_sha256,
            gnss_receiver=identity.gnss_receiver,
            audit=self._audit(),
        )
        polled = current.state not in (AgentState.PAUSED, AgentState.FAILED)
        if changed_ak and polled:
            self._move(
                agent_id, _polled, AgentState.REGISTERED, Reason.AK_CHANGED, keep_memory=False
            )
        self._hot.bump_config_version()
        if polled:  # try the new address at once, not after an unreachable agent's backoff
            self._hot.schedule(agent_id, self._clock())
        return self._store.get_agent(agent_id)

    def set_policy(self, agent_id: str, policy_name: str) -> VerifiedAgentView:
        self._store.set_policy_of(agent_id, policy_name, audit=self._audit())
        self._hot.bump_config_version()
        return self._store.get_agent(agent_id)

    def pause(self, agent_id: str) -> VerifiedAgentView:
        current = self._store.get_agent(agent_id)
        if current.state is AgentState.PAUSED:
            return current
        self._hot.unschedule(agent_id)
        self._move(
            agent_id, _not_paused, AgentState.PAUSED, Reason.OPERATOR_PAUSED, keep_memory=True
        )
        return self._store.get_agent(agent_id)

    def resume(self, agent_id: str) -> VerifiedAgentView:
        current = self._store.get_agent(agent_id)
        if current.state is not AgentState.PAUSED:
            raise Conflict(f"agent {agent_id!r} is {current.state}, not paused")
        self._move(
            agent_id, _paused, AgentState.ATTESTING, Reason.OPERATOR_RESUMED, keep_memory=True
        )
        self._hot.schedule(agent_id, self._clock())
        return self._store.get_agent(agent_id)

    def readmit(self, agent_id: str) -> VerifiedAgentView:
        """A failed agent starts over (IMA replay from entry 0) after an operator looked at it."""
        current = self._store.get_agent(agent_id)
        if current.state is not AgentState.FAILED:
            raise Conflict(f"agent {agent_id!r} is {current.state}, not failed")
        self._move(
            agent_id, _failed, AgentState.REGISTERED, Reason.OPERATOR_READMITTED, keep_memory=False
        )
        self._hot.schedule(agent_id, self._clock())
        return self._store.get_agent(agent_id)

    def remove(self, agent_id: str) -> None:
        self._store.remove_agent(agent_id, self._now(), audit=self._audit())
        self._hot.forget(agent_id)
        self._hot.bump_config_version()

    def status(self, agent_id: str) -> tuple[VerifiedAgentView, LiveStatus | None]:
        return self._store.get_agent(agent_id), self._hot.load(agent_id)

    def _move(
        self,
        agent_id: str,
        allowed: Callable[[AgentState], bool],
        new: AgentState,
        reason: Reason,
        *,
        keep_memory: bool,
    ) -> None:
        # Under the agent's lock: a round running now finishes first, and cannot undo this.
        token = uuid.uuid4().hex
        fence = self._hot.wait_for_lock(agent_id, token, OPERATOR_LOCK_TTL, OPERATOR_LOCK_WAIT)
        if fence is None:
            raise Conflict(f"a round of agent {agent_id!r} does not finish; try again")
        try:
            result = self._commit_move(agent_id, token, fence, allowed, new, reason)
            live = self._hot.load(agent_id)
            memory = live.memory if live is not None and keep_memory else RoundMemory()
            self._hot.store_and_unlock(agent_id, token, LiveStatus(state=new, memory=memory))
        finally:
            self._hot.unlock(agent_id, token)
        self._publish(result)
        self._hot.bump_config_version()

    def _commit_move(
        self,
        agent_id: str,
        token: str,
        fence: int,
        allowed: Callable[[AgentState], bool],
        new: AgentState,
        reason: Reason,
    ) -> Committed:
        def decide(stored: AgentState) -> AgentState | None:
            return new if allowed(stored) else None

        record = action_record(
            agent_id=agent_id,
            round_id=token,
            at=self._now(),
            kind=RecordKind.OPERATOR,
            origin=self._origin,
            reason=reason,
        )
        for _ in range(2):  # a second try after lifting a fence counter Redis forgot
            result = self._verdicts.commit(
                [VerdictDraft(record=record, fence=fence, decide=decide)]
            )[0]
            if isinstance(result, Committed):
                return result
            if result.why == "fence" and result.stored_fence:
                fence = self._hot.raise_fence(agent_id, result.stored_fence)
                continue
            break
        stored = result.stored_state if isinstance(result, Refused) else None
        raise Conflict(f"agent {agent_id!r} is {stored or 'gone'}; cannot {reason.value}")


def _no_deliveries(_delivery_id: int) -> None:
    """Operator actions never fail an agent, so they have no webhook deliveries to enqueue."""


def _polled(state: AgentState) -> bool:
    return state not in (AgentState.PAUSED, AgentState.FAILED)


def _not_paused(state: AgentState) -> bool:
    return state is not AgentState.PAUSED


def _paused(state: AgentState) -> bool:
    return state is AgentState.PAUSED


def _failed(state: AgentState) -> bool:
    return state is AgentState.FAILED
