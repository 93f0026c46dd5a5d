"""Tokens from genuine-format rounds, for the pure token tests: a software node answers a round
(PoR, or PoG with a u-blox fix signed by a software location key), ``verify_round`` judges it,
``round_record`` records it, and ``build_claims`` + an ES256 key make the token."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from dataclasses import dataclass, replace

from cryptography.hazmat.primitives.asymmetric import ec

from geoattest.jose import compact_json, encode_jws, es256_sign, public_jwk, thumbprint
from geofence import LocationEvidence, SourceKind, encode_evidence
from tests.unit.verifier.core.test_location import SoftKey, countries, novato
from tests.unit.verifier.core.test_round import ALLOWED, SoftwareNode, _policy
from tests.unit.verifier.core.test_round_location import _geofenced
from verifier.core.record import GENESIS, encode_record, record_digest
from verifier.core.record_types import EvidenceRecord
from verifier.core.round import verify_round
from verifier.core.round_record import RecordOrigin, round_record
from verifier.core.round_types import RoundMemory
from verifier.core.states import AgentState, Outcome
from verifier.tokens.claims import (
    GeoRules,
    HostFacts,
    IssuerFacts,
    TokenClaims,
    TokenOrder,
    WorkloadFacts,
    build_claims,
    spiffe_subject,
    token_header,
)
from verifier.tokens.snapshot import zone_facts
from verifier.tokens.verify import TrustedKeys
from verifier.tokens.vocabulary import TokenType, WorkloadMeasure

ISSUER = "https://verifier.test"
AUDIENCE = "model-keys"
WORKLOAD = hashlib.sha256(b"bash").digest()
MAX_AGE = dt.timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class Passed:
    record: EvidenceRecord
    digest: bytes
    judged_at: dt.datetime  # the round's now: tokens are issued just after it


def passed_round(*, geo: bool, source: SourceKind = SourceKind.SERIAL) -> Passed:
    """A passed round of a node that ran /usr/bin/bash (allowlisted), and its record."""
    node = SoftwareNode()
    node.measure("/usr/bin/bash", ALLOWED["/usr/bin/bash"])
    nonce = os.urandom(32)
    if not geo:
        now = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
        policy = _policy(node, ALLOWED)
        evidence = node.answer(nonce, 0)
        location_key = None
    else:
        key, fix = SoftKey.new(), novato()
        assert fix.utc is not None
        now = fix.utc + dt.timedelta(seconds=1)
        policy = _geofenced(node, "USA")
        assert policy.location is not None
        accepted = frozenset({source.value})
        thresholds = replace(policy.location.thresholds, accepted_sources=accepted)
        policy = replace(policy, location=replace(policy.location, thresholds=thresholds))
        signed = encode_evidence(LocationEvidence.from_fix(fix, nonce=nonce, source=source))
        evidence = node.geofenced_answer(signed, key.sign(signed))
        location_key = key.public
    result = verify_round(
        evidence,
        ak=node.ak.public,
        policy=policy,
        previous=RoundMemory(),
        now=now,
        location_key=location_key,
    )
    assert result.outcome is Outcome.PASSED, result.message
    record = round_record(
        agent_id="edge-1",
        round_id=os.urandom(16).hex(),
        started_at=now,
        ended_at=now,
        judged_at=now,
        origin=RecordOrigin(verifier_id="test", zones_sha256=bytes(32) if geo else None),
        policy=policy,
        ak=node.ak.public,
        location_key=location_key,
        previous=RoundMemory(),
        evidence=evidence,
        result=result,
    )
    record = replace(
        record, seq=7, prev=GENESIS, from_state=AgentState.ATTESTED, to_state=AgentState.ATTESTED
    )
    return Passed(record=record, digest=record_digest(encode_record(record)), judged_at=now)


@dataclass
class Signer:
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def new(cls) -> Signer:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @property
    def kid(self) -> str:
        return thumbprint(self.key.public_key())

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [{**public_jwk(self.key.public_key()), "kid": self.kid, "alg": "ES256"}]}

    def trusted(self) -> TrustedKeys:
        return TrustedKeys.from_jwks(self.jwks())

    def sign(self, header: dict[str, str], body: dict[str, object]) -> str:
        return encode_jws(header, compact_json(body), self.sign_raw)

    def sign_raw(self, data: bytes) -> bytes:
        return es256_sign(self.key, data)


def claims_for(
    passed: Passed,
    token_type: TokenType = TokenType.POG,
    *,
    measured_by: WorkloadMeasure = WorkloadMeasure.IMA_ALLOWLISTED,
    nonce: bytes | None = None,
    cnf_jkt: str | None = None,
    ttl: dt.timedelta = dt.timedelta(seconds=300),
    disclose: bool = True,
    at: dt.datetime | None = None,
    lease: dt.timedelta = dt.timedelta(seconds=20),
) -> TokenClaims:
    now = at or passed.judged_at + dt.timedelta(seconds=1)
    geo = None
    if token_type is TokenType.POG:
        geo = GeoRules(
            zone=zone_facts(countries().zone("USA")),
            max_fix_age=MAX_AGE,
            disclose_coordinates=disclose,
        )
    return build_claims(
        TokenOrder(
            type=token_type,
            audience=AUDIENCE,
            subject=spiffe_subject("geoattest.test", "edge-1", WORKLOAD),
            nonce=nonce,
            cnf_jkt=cnf_jkt,
        ),
        HostFacts(
            agent_id="edge-1",
            ek_certificate_sha256=hashlib.sha256(b"ek certificate").digest(),
            record=passed.record,
            record_digest=passed.digest,
            lease_expires_at=passed.record.ended_at + lease,
        ),
        WorkloadFacts(
            sha256=WORKLOAD,
            measured_by=measured_by,
            path="/usr/bin/bash" if measured_by is not WorkloadMeasure.AGENT else None,
        ),
        geo,
        IssuerFacts(issuer=ISSUER, jti=os.urandom(12).hex(), now=now, ttl=ttl, build="test"),
    )


def issue(signer: Signer, claims: TokenClaims) -> str:
    return signer.sign(token_header(claims.type, signer.kid), claims.body)
