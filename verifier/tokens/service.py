"""The token service: token sessions, and PoR/PoG tokens issued on the lease.

``issue`` takes a token request (a JWS by the agent's session key) and, in order: checks the
request (signature, ``iat`` window, ``jti`` used once, the ``cnf`` key's proof); runs a fresh round
when the request carries a relying party's nonce; reads the agent's lease and last passed round
(``Snapshots``); refuses unless the lease is valid now (``agent_not_attested``) and, for PoG, the
round's location check passed with a fresh fix (``token_location_unavailable``); decides how
strong the workload claim is (the executable's SHA-256 in this boot's verified IMA log and listed
by the policy in force, or only under an excluded path, or not at all); builds the claims from that
record (``verifier.tokens.claims``), signs them with the active token key, and stores the token
(``TokenLedger``: only while the agent is still attested and the record is still its newest
passed round) before it is handed out. A token the ledger refuses because a newer round passed
since the snapshot was read is built once more on a fresh read (never handed out as it was).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata

import redis
from pydantic import ValidationError

from geoattest.errors import (
    AgentNotAttested,
    GeoattestError,
    JoseMalformed,
    NotFound,
    TokenLocationUnavailable,
    TokenRequestInvalid,
    TokenRequestReplayed,
    TokenRequestSignatureInvalid,
    TokenSessionRefused,
    TokenSessionUnknown,
)
from geoattest.jose import ES256, compact_json, encode_jws, es256_valid, parse_jws
from geoattest.pcr_banks import PcrBank
from geoattest.wire_tokens import (
    PROOF_WINDOW,
    TOKEN_REQUEST_TYP,
    TokenChallengeView,
    TokenRequestClaims,
    TokenSessionRequest,
    TokenSessionView,
    TokenView,
    check_cnf_proof,
    decode_nonce,
)
from tpm import ClockInfo, parse_tpms_attest
from verifier.core.measured import MeasuredFile, approval
from verifier.core.record_types import EvidenceRecord
from verifier.metrics import TOKENS_ISSUED, TOKENS_REFUSED
from verifier.signing.keyring import Keyring
from verifier.storage.runtime_digests import RuntimeDigests
from verifier.storage.tokens import TokenDraft, TokenLedger
from verifier.tokens.claims import (
    GeoRules,
    HostFacts,
    IssuerFacts,
    TokenOrder,
    WorkloadFacts,
    build_claims,
    spiffe_subject,
    token_header,
)
from verifier.tokens.fresh import FreshRounds
from verifier.tokens.sessions import TokenSessions
from verifier.tokens.snapshot import AgentSnapshot, Snapshots
from verifier.tokens.vocabulary import TokenType, WorkloadMeasure

__all__ = ["TokenConfig", "TokenService"]

log = logging.getLogger(__name__)


def _build() -> str:
    try:
        return metadata.version("geoattest")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenConfig:
    issuer: str
    trust_domain: str
    ttl: dt.timedelta
    workload_names: Mapping[str, str] = field(default_factory=dict)  # sha256 hex -> sub
    build: str = field(default_factory=_build)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Order:
    """A checked token request: its claims, its session's boot, the relying party's nonce and
    the proven ``cnf`` key's thumbprint."""

    request: TokenRequestClaims
    reset: int
    nonce: bytes | None
    cnf_jkt: str | None


class TokenService:
    def __init__(
        self,
        *,
        config: TokenConfig,
        sessions: TokenSessions,
        snapshots: Snapshots,
        ledger: TokenLedger,
        keyring: Keyring,
        measured: RuntimeDigests,
        fresh: FreshRounds | None,
        client: redis.Redis,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._sessions = sessions
        self._snapshots = snapshots
        self._ledger = ledger
        self._keyring = keyring
        self._measured = measured
        self._fresh = fresh
        self._redis = client
        self._clock = clock

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._clock(), dt.UTC)

    # --- sessions -----------------------------------------------------------------------------

    def challenge(self, agent_id: str) -> TokenChallengeView:
        snapshot = self._attested(agent_id)
        selection = snapshot.policy.pcr_selection() if snapshot.policy else {PcrBank.SHA256: [0]}
        bank = next(iter(selection))
        challenge, expires = self._sessions.challenge(agent_id)
        return TokenChallengeView(
            challenge=challenge.hex(), expires_at=expires, pcrs={bank: [selection[bank][0]]}
        )

    def open_session(self, request: TokenSessionRequest) -> TokenSessionView:
        snapshot = self._attested(request.agent_id)
        record = _passed_record(snapshot)
        ak = self._snapshots.ak(request.agent_id)
        if ak is None:
            raise TokenSessionRefused(f"agent {request.agent_id!r}: its AK is unusable")
        session = self._sessions.open(request, ak=ak, boot=_clock_of(record))
        log.info("token session opened for %s", request.agent_id)
        return TokenSessionView(
            session_id=session.session_id,
            expires_at=dt.datetime.fromtimestamp(session.expires_at, dt.UTC),
        )

    # --- tokens -------------------------------------------------------------------------------

    def issue(self, signed_request: str) -> TokenView:
        """Issue one token for a signed request (module docstring); raises the refusal.
        Counted in ``geoattest_tokens_issued`` / ``geoattest_tokens_refused`` (by code)."""
        try:
            view = self._issue(signed_request)
        except GeoattestError as e:
            TOKENS_REFUSED.labels(e.code).inc()
            raise
        TOKENS_ISSUED.labels(view.type).inc()
        return view

    def _issue(self, signed_request: str) -> TokenView:
        now = self._now()
        request, session_reset, measured = self._checked_request(signed_request, now)
        agent_id = request.agent_id
        try:
            nonce = decode_nonce(request.nonce)
        except JoseMalformed as e:
            raise TokenRequestInvalid(e.message) from e
        cnf_jkt = None
        if request.cnf is not None:
            cnf_jkt = check_cnf_proof(
                request.cnf,
                audience=request.audience,
                kind=request.type,
                nonce=request.nonce,
                now=now,
            )
        order = _Order(request=request, reset=session_reset, nonce=nonce, cnf_jkt=cnf_jkt)
        if nonce is not None:
            if self._fresh is None:
                raise TokenRequestInvalid("this verifier runs no fresh rounds (no nonce accepted)")
            committed = self._fresh.run(agent_id, nonce)
            self._snapshots.forget(agent_id)
            snapshot = self._attested(agent_id)
            record = committed.record
            # a fresh round may have measured the workload just now
            measured = self._measured.lookup(
                agent_id, _clock_of(record).reset_count, bytes.fromhex(request.workload.sha256)
            )
            draft, view = self._signed(order, measured, snapshot, record, committed.digest)
            if self._ledger.store(draft):
                return view
        else:
            for _attempt in range(2):  # once more on a fresh read: a newer round passed
                snapshot = self._attested(agent_id)
                record, digest = _passed_record(snapshot), snapshot.record_digest
                draft, view = self._signed(order, measured, snapshot, record, digest)
                if self._ledger.store(draft):
                    return view
                self._snapshots.forget(agent_id)
        self._snapshots.forget(agent_id)
        raise AgentNotAttested(f"agent {agent_id!r}: its trust ended while the token was made")

    def _signed(
        self,
        order: _Order,
        measured: MeasuredFile | None,
        snapshot: AgentSnapshot,
        record: EvidenceRecord,
        digest: bytes,
    ) -> tuple[TokenDraft, TokenView]:
        """The token for ``order`` on ``record`` (the snapshot's newest passed round, or a fresh
        one), signed, and the draft the ledger must keep before it is handed out."""
        request, agent_id = order.request, order.request.agent_id
        token_type = TokenType(request.type)
        clock = _clock_of(record)
        if clock.reset_count != order.reset:
            self._sessions.forget_cached(agent_id)
            raise TokenSessionUnknown("the agent rebooted since its session opened: open a new one")
        workload = _workload(bytes.fromhex(request.workload.sha256), measured, snapshot)
        geo = self._geo(record, snapshot) if token_type is TokenType.POG else None
        lease_end = record.ended_at + snapshot.max_age
        subject = self._config.workload_names.get(workload.sha256.hex()) or spiffe_subject(
            self._config.trust_domain, agent_id, workload.sha256
        )
        claims = build_claims(
            TokenOrder(
                type=token_type,
                audience=request.audience,
                subject=subject,
                nonce=order.nonce,
                cnf_jkt=order.cnf_jkt,
            ),
            HostFacts(
                agent_id=agent_id,
                ek_certificate_sha256=snapshot.view.ek_certificate_sha256,
                record=record,
                record_digest=digest,
                lease_expires_at=min(lease_end, snapshot.lease.expires_at or lease_end),
                clock=clock,
            ),
            workload,
            geo,
            IssuerFacts(
                issuer=self._config.issuer,
                jti=secrets.token_urlsafe(16),
                now=self._now(),
                ttl=self._config.ttl,
                build=self._config.build,
            ),
        )
        key = self._keyring.active()
        token = encode_jws(token_header(token_type, key.kid), compact_json(claims.body), key.sign)
        draft = TokenDraft(
            jti=claims.jti,
            agent_id=agent_id,
            type=token_type.value,
            audience=request.audience,
            workload_sha256=workload.sha256,
            issued_at=claims.issued_at,
            expires_at=claims.expires_at,
            record_seq=record.seq,
            record_ended_at=record.ended_at,
            max_age=snapshot.max_age,
            token=token,
        )
        view = TokenView(
            token=token,
            type=request.type,
            jti=claims.jti,
            expires_at=claims.expires_at,
            record_seq=record.seq,
        )
        return draft, view

    def forget_agent(self, agent_id: str) -> None:
        """The agent's trust ended (revocation channel): drop its session and cached view."""
        self._sessions.forget(agent_id)
        self._snapshots.forget(agent_id)

    # --- parts --------------------------------------------------------------------------------

    def _checked_request(
        self, signed: str, now: dt.datetime
    ) -> tuple[TokenRequestClaims, int, MeasuredFile | None]:
        """The request's claims once its session signature, freshness and uniqueness hold, the
        boot (resetCount) its session was opened in, and the workload's entry in that boot's
        measured files (None: IMA did not measure it)."""
        try:
            jws = parse_jws(signed.strip())
        except JoseMalformed as e:
            raise TokenRequestInvalid(f"token request: {e.message}") from e
        header = jws.header
        if header.alg != ES256 or header.typ != TOKEN_REQUEST_TYP or not header.kid:
            raise TokenRequestInvalid(
                f"a token request is an ES256 JWS of typ {TOKEN_REQUEST_TYP} naming its session"
            )
        try:
            request = TokenRequestClaims.model_validate(json.loads(jws.payload))
        except (ValueError, ValidationError) as e:
            raise TokenRequestInvalid(f"token request payload: {_first_error(e)}") from e
        session = self._sessions.get(request.agent_id, header.kid)
        if session is None:
            raise TokenSessionUnknown(
                f"no token session {header.kid[:40]!r} for agent {request.agent_id!r}"
            )
        if not es256_valid(session.public, jws.signing_input, jws.signature):
            raise TokenRequestSignatureInvalid("the request is not signed by the session key")
        if abs(now.timestamp() - request.iat) > PROOF_WINDOW.total_seconds():
            raise TokenRequestReplayed("the request's iat is not within a minute of now")
        # One round trip: the request id used once, and the workload in this boot's IMA set.
        pipe = self._redis.pipeline(transaction=False)
        self._sessions.queue_claim(pipe, request.agent_id, request.jti)
        self._measured.queue_lookup(pipe, request.agent_id, bytes.fromhex(request.workload.sha256))
        first_use, measured = pipe.execute()
        if not first_use:
            raise TokenRequestReplayed(f"request {request.jti} was already used")
        found = RuntimeDigests.found(
            measured, session.reset_count, bytes.fromhex(request.workload.sha256)
        )
        return request, session.reset_count, found

    def _attested(self, agent_id: str) -> AgentSnapshot:
        try:
            snapshot = self._snapshots.of(agent_id)
        except NotFound as e:
            raise AgentNotAttested(e.message) from e
        if not snapshot.lease.attested or snapshot.record is None:
            raise AgentNotAttested(
                f"agent {agent_id!r} is {snapshot.lease.state.value}: no valid lease, no token"
            )
        return snapshot

    def _geo(self, record: EvidenceRecord, snapshot: AgentSnapshot) -> GeoRules:
        policy = snapshot.policy.location if snapshot.policy is not None else None
        if policy is None or record.location is None:
            raise TokenLocationUnavailable("the agent's policy does not check location")
        zone = self._snapshots.zone(record.location.zone_id)
        if zone is None:
            raise TokenLocationUnavailable(f"zone {record.location.zone_id!r} is not loaded")
        return GeoRules(
            zone=zone,
            max_fix_age=dt.timedelta(seconds=policy.thresholds.max_fix_age_s),
            disclose_coordinates=policy.disclose_coordinates,
        )


def _workload(
    sha256: bytes, measured: MeasuredFile | None, snapshot: AgentSnapshot
) -> WorkloadFacts:
    """How strong the workload claim is: measured in this boot's verified IMA log and listed by
    the policy in force, or measured under an excluded path, or neither."""
    runtime = snapshot.policy.runtime if snapshot.policy is not None else None
    kind = approval(measured, runtime) if measured is not None else None
    if measured is None or kind is None:
        return WorkloadFacts(sha256=sha256, measured_by=WorkloadMeasure.AGENT)
    by = WorkloadMeasure.IMA_ALLOWLISTED
    if kind != "allowlisted":
        by = WorkloadMeasure.IMA_EXCLUDED
    return WorkloadFacts(sha256=sha256, measured_by=by, path=measured.path)


def _passed_record(snapshot: AgentSnapshot) -> EvidenceRecord:
    if snapshot.record is None:
        raise AgentNotAttested(f"agent {snapshot.view.agent_id!r} has no passed round kept")
    return snapshot.record


def _clock_of(record: EvidenceRecord) -> ClockInfo:
    if record.evidence is None:
        raise AgentNotAttested(f"record {record.seq} holds no quote")
    return _clock_of_attest(record.evidence.attest)


@functools.lru_cache(maxsize=4096)
def _clock_of_attest(attest: bytes) -> ClockInfo:
    """A stored quote's clock (parsed once per record, not per token)."""
    return parse_tpms_attest(attest).clock_info


def _first_error(error: Exception) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        return f"{where}: {first['msg']}"
    return str(error)
