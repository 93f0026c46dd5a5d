"""Proof-of-Residency and Proof-of-Geofencing claims, built from a stored evidence record. Pure.

``build_claims`` turns what the verifier knows (the agent's last passed round record, its lease,
the workload the agent identified, the zone the fix is inside) into the EAT/EAR claims of one
token. It does no I/O and reads no clock: the caller passes ``now``. It refuses (raising the
``RequestError`` a token request gets) rather than claim more than the record shows:

- the record must be a passed round with evidence (``AgentNotAttested`` otherwise);
- a PoG token needs the round's location check passed with an ``inside`` decision and signed
  location evidence (``TokenLocationUnavailable``), and a fix younger than the policy's maximum
  fix age;
- the lifetime is the shortest of the configured TTL, the lease (the last passed round plus the
  policy's ``max_age``) and, for PoG, the fix's age limit; under one second is refused.

Tiers follow EAR (draft-ietf-rats-ear) and AR4SI: each submodule (``host``, ``workload``,
``geo``) has an ``ear.status`` and an ``ear.trustworthiness-vector``; ``affirming`` only when
everything the submodule vouches for was checked and passed. docs/tokens.md lists every claim.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from dataclasses import dataclass

from geoattest.errors import (
    AgentNotAttested,
    EvidenceMalformed,
    LocationEvidenceInvalid,
    TokenLocationUnavailable,
    TpmFormatError,
)
from geoattest.jose import b64url
from geofence import LocationEvidence, SourceKind, decode_evidence
from tpm import ClockInfo, parse_tpms_attest
from verifier.core.record_types import EvidenceRecord, PolicyRef, RecordKind
from verifier.core.round_types import Check, Verdict
from verifier.core.states import Outcome
from verifier.tokens.vocabulary import EarStatus, TokenType, Trust, WorkloadMeasure

__all__ = [
    "GeoRules",
    "HostFacts",
    "IssuerFacts",
    "TokenClaims",
    "TokenOrder",
    "WorkloadFacts",
    "ZoneFacts",
    "build_claims",
    "spiffe_subject",
    "token_header",
]

MIN_LIFETIME = dt.timedelta(seconds=1)
VERIFIER_DEVELOPER = "geoattest"


_WORKLOAD_TRUST = {
    WorkloadMeasure.IMA_ALLOWLISTED: Trust.AFFIRMING,
    WorkloadMeasure.IMA_EXCLUDED: Trust.WARNING,
    WorkloadMeasure.AGENT: Trust.UNRECOGNIZED,
}

# The checks a host submodule must have passed (not merely skipped) to be ``affirming``; the
# boot log replay is a consistency check on top of the golden PCRs and location belongs to geo.
HOST_CHECKS = (Check.QUOTE, Check.PCR_SELECTION, Check.CLOCK, Check.BOOT_PCRS, Check.IMA)


@dataclass(frozen=True, slots=True, kw_only=True)
class HostFacts:
    agent_id: str
    ek_certificate_sha256: bytes | None  # None: the agent was added before it was recorded
    record: EvidenceRecord  # the agent's last passed round
    record_digest: bytes
    lease_expires_at: dt.datetime
    clock: ClockInfo | None = None  # the record's quote clock, when the caller parsed it already


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadFacts:
    sha256: bytes
    measured_by: WorkloadMeasure
    path: str | None = None  # the path IMA measured it under (none when not measured)


@dataclass(frozen=True, slots=True, kw_only=True)
class ZoneFacts:
    id: str
    name: str
    version: int
    polygon_sha256: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class GeoRules:
    """What the agent's policy says about location, for a PoG token."""

    zone: ZoneFacts  # the zone the record's fix is inside
    max_fix_age: dt.timedelta
    disclose_coordinates: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenOrder:
    type: TokenType
    audience: str
    subject: str
    nonce: bytes | None = None  # the relying party's, bound into a fresh round's quote
    cnf_jkt: str | None = None  # RFC 7638 thumbprint of the workload's key


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuerFacts:
    issuer: str
    jti: str
    now: dt.datetime
    ttl: dt.timedelta
    build: str  # the verifier's version (``ear.verifier-id``)


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenClaims:
    """One token's claims (``to_json`` is the JWS payload) and what the ledger stores."""

    type: TokenType
    jti: str
    subject: str
    audience: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    status: EarStatus  # the weakest submodule's
    record_seq: int
    workload_sha256: bytes
    body: dict[str, object]

    def to_json(self) -> dict[str, object]:
        return self.body


def token_header(token_type: TokenType, kid: str) -> dict[str, str]:
    """The whole protected header: nothing but ``alg``, ``typ`` and ``kid``."""
    return {"alg": "ES256", "typ": token_type.typ, "kid": kid}


def build_claims(
    order: TokenOrder,
    host: HostFacts,
    workload: WorkloadFacts,
    geo: GeoRules | None,
    issuer: IssuerFacts,
) -> TokenClaims:
    """The claims of one token (module docstring); raises ``AgentNotAttested`` or
    ``TokenLocationUnavailable`` instead of claiming what the record does not show."""
    record = host.record
    _require_passed_round(record)
    evidence = record.evidence
    assert evidence is not None  # noqa: S101  # checked by _require_passed_round
    clock = host.clock or _clock_of(evidence.attest)
    now = issuer.now
    expires = min(now + issuer.ttl, host.lease_expires_at)
    submods: dict[str, object] = {
        "host": _host_submod(host, clock),
        "workload": _workload_submod(workload),
    }
    if order.type is TokenType.POG:
        if geo is None:
            raise TokenLocationUnavailable("the agent's policy does not check location")
        location = _location_of(record)
        fix_until = location.utc + geo.max_fix_age
        if fix_until <= now:
            raise TokenLocationUnavailable(
                f"the last passed fix is {(now - location.utc).total_seconds():.1f} s old; the "
                f"policy allows {geo.max_fix_age.total_seconds():.0f} s"
            )
        expires = min(expires, fix_until)
        submods["geo"] = _geo_submod(record, location, geo)
    issued_at = _whole_seconds(now)
    expires_at = _whole_seconds(expires)
    if expires - now < MIN_LIFETIME:
        raise AgentNotAttested(
            f"the agent's lease (or fix) ends in {(expires - now).total_seconds():.2f} s: too "
            "short for a token"
        )
    status = min((_status_of(submod) for submod in submods.values()), key=lambda tier: tier.rank)
    body: dict[str, object] = {
        "iss": issuer.issuer,
        "sub": order.subject,
        "aud": order.audience,
        "iat": _seconds(issued_at),
        "nbf": _seconds(issued_at),
        "exp": _seconds(expires_at),
        "jti": issuer.jti,
        "eat_profile": order.type.profile,
        "ear.verifier-id": {"developer": VERIFIER_DEVELOPER, "build": issuer.build},
        "geoattest.record": {
            "agent_id": record.agent_id,
            "seq": record.seq,
            "round_id": record.round_id,
            "digest": host.record_digest.hex(),
            "ended_at": _seconds(record.ended_at),
        },
        "submods": submods,
    }
    if order.nonce is not None:
        body["eat_nonce"] = b64url(order.nonce)
    if order.cnf_jkt is not None:
        body["cnf"] = {"jkt": order.cnf_jkt}
    return TokenClaims(
        type=order.type,
        jti=issuer.jti,
        subject=order.subject,
        audience=order.audience,
        issued_at=issued_at,
        expires_at=expires_at,
        status=status,
        record_seq=record.seq,
        workload_sha256=workload.sha256,
        body=body,
    )


def spiffe_subject(trust_domain: str, agent_id: str, sha256: bytes) -> str:
    """``spiffe://<trust domain>/node/<agent>/sha256/<hex>``: the default workload URI."""
    return f"spiffe://{trust_domain}/node/{agent_id}/sha256/{sha256.hex()}"


# --- submodules -----------------------------------------------------------------------------------


def _require_passed_round(record: EvidenceRecord) -> None:
    if record.kind is not RecordKind.ROUND or record.outcome is not Outcome.PASSED:
        raise AgentNotAttested(f"record {record.seq} of {record.agent_id} is not a passed round")
    if record.evidence is None or record.policy is None:
        raise AgentNotAttested(f"record {record.seq} of {record.agent_id} holds no evidence")
    failed = [c.check.value for c in record.checks if c.verdict is Verdict.FAILED]
    if failed:
        raise AgentNotAttested(f"record {record.seq} failed {', '.join(failed)}")


def _clock_of(attest: bytes) -> ClockInfo:
    try:
        return parse_tpms_attest(attest).clock_info
    except TpmFormatError as e:  # a stored passed round always parses; fail closed if not
        raise EvidenceMalformed(f"stored quote does not parse: {e.message}") from e


def _verdicts(record: EvidenceRecord) -> dict[str, str]:
    return {c.check.value: c.verdict.value for c in record.checks}


def _host_submod(host: HostFacts, clock: ClockInfo) -> dict[str, object]:
    record = host.record
    policy = record.policy
    assert policy is not None  # noqa: S101  # checked by _require_passed_round
    verdicts = _verdicts(record)

    def passed(check: Check) -> bool:
        return verdicts.get(check.value) == Verdict.PASSED.value

    vector = {
        "instance-identity": Trust.AFFIRMING if passed(Check.QUOTE) else Trust.NO_CLAIM,
        "hardware": Trust.AFFIRMING if passed(Check.QUOTE) else Trust.NO_CLAIM,
        "configuration": Trust.AFFIRMING if passed(Check.BOOT_PCRS) else Trust.NO_CLAIM,
        "executables": Trust.AFFIRMING if passed(Check.IMA) else Trust.NO_CLAIM,
    }
    affirming = all(passed(check) for check in HOST_CHECKS)
    details: dict[str, object] = {
        "agent_id": host.agent_id,
        "ak_name": (record.ak_name or b"").hex(),
        "last_passed_at": _seconds(record.ended_at),
        "reset_count": clock.reset_count,
        "restart_count": clock.restart_count,
        "policy": _policy_json(policy),
        "checks": verdicts,
    }
    if host.ek_certificate_sha256 is not None:
        details["ek_certificate_sha256"] = host.ek_certificate_sha256.hex()
    return {
        "ear.status": (EarStatus.AFFIRMING if affirming else EarStatus.WARNING).value,
        "ear.trustworthiness-vector": {name: int(value) for name, value in vector.items()},
        "ear.appraisal-policy-id": _policy_id(policy),
        "geoattest.host": details,
    }


def _workload_submod(workload: WorkloadFacts) -> dict[str, object]:
    trust = _WORKLOAD_TRUST[workload.measured_by]
    details: dict[str, object] = {
        "sha256": workload.sha256.hex(),
        "measured_by": workload.measured_by.value,
    }
    if workload.path is not None:
        details["path"] = workload.path
    return {
        "ear.status": trust.tier.value,
        "ear.trustworthiness-vector": {"executables": int(trust)},
        "geoattest.workload": details,
    }


def _location_of(record: EvidenceRecord) -> LocationEvidence:
    evidence = record.evidence
    verdicts = _verdicts(record)
    summary = record.location
    if verdicts.get(Check.LOCATION.value) != Verdict.PASSED.value or summary is None:
        raise TokenLocationUnavailable(
            f"record {record.seq}: the location check did not pass "
            f"({verdicts.get(Check.LOCATION.value, 'absent')})"
        )
    if summary.decision != "inside" or evidence is None or evidence.location is None:
        raise TokenLocationUnavailable(f"record {record.seq}: no inside decision to vouch for")
    try:
        return decode_evidence(evidence.location)
    except LocationEvidenceInvalid as e:
        raise TokenLocationUnavailable(f"record {record.seq}: {e.message}") from e


def _geo_submod(
    record: EvidenceRecord, location: LocationEvidence, geo: GeoRules
) -> dict[str, object]:
    summary = record.location
    assert summary is not None  # noqa: S101  # checked by _location_of
    replayed = location.source == SourceKind.FILE.value
    trust = Trust.WARNING if replayed else Trust.AFFIRMING
    zone = geo.zone
    details: dict[str, object] = {
        "zone": {
            "id": zone.id,
            "name": zone.name,
            "version": zone.version,
            "polygon_sha256": zone.polygon_sha256.hex(),
        },
        "decision": summary.decision,
        # centimetres, as the record keeps it (a fresh round's record is not yet re-read)
        "distance_m": round(summary.distance_m, 2) if math.isfinite(summary.distance_m) else None,
        "gnss_receiver_sha256": hashlib.sha256(location.receiver.encode("utf-8")).hexdigest(),
        "source": location.source,
        "fix_at": _seconds(location.utc),
        "fix_max_age_s": int(geo.max_fix_age.total_seconds()),
    }
    if record.zones_sha256 is not None:
        details["zones_file_sha256"] = record.zones_sha256.hex()
    submod: dict[str, object] = {
        "ear.status": trust.tier.value,
        "ear.trustworthiness-vector": {"sourced-data": int(trust)},
        "geoattest.geo": details,
    }
    if geo.disclose_coordinates:
        point: dict[str, object] = {
            "latitude": location.latitude,
            "longitude": location.longitude,
            "timestamp": _seconds(location.utc),
        }
        if location.horizontal_accuracy_m is not None:
            point["accuracy"] = location.horizontal_accuracy_m
        submod["location"] = point
    return submod


def _status_of(submod: object) -> EarStatus:
    assert isinstance(submod, dict)  # noqa: S101  # built above
    return EarStatus(submod["ear.status"])


def _policy_json(policy: PolicyRef) -> dict[str, object]:
    return {"name": policy.name, "version": policy.version, "sha256": policy.sha256.hex()}


def _policy_id(policy: PolicyRef) -> str:
    return f"geoattest:policy:{policy.name}:{policy.version}:{policy.sha256.hex()}"


def _whole_seconds(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(microsecond=0)


def _seconds(moment: dt.datetime) -> int:
    return math.floor(moment.timestamp())
