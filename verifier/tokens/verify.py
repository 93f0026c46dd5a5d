"""Checking a PoR/PoG token as a relying party: the JWKS, the token, what you expect. Pure.

``verify_token(token, keys, expected, now)`` returns a ``VerifiedToken`` or a ``Rejected`` with
one precise ``RejectReason``; it never raises for a bad token. In order:

1. the compact JWS parses, its protected header holds exactly ``alg``, ``typ`` and ``kid``
   (``malformed``), ``alg`` is ES256 (``wrong_alg``: ``none`` and HS256 keyed with the public
   key are refused here, before any key is touched), ``typ`` is ``por+jwt`` or ``pog+jwt``
   (``wrong_typ``), the ``kid`` is one of the trusted keys (``unknown_kid``) and the ES256
   signature verifies with it (``bad_signature``);
2. the payload is a JSON object of the documented claims (``malformed``), and its
   ``eat_profile`` and submodules are the ones its ``typ`` says (``wrong_typ``: a PoR token
   relabelled PoG, or any other JWS the same key signed, is not accepted as another kind);
3. ``iss`` when expected (``wrong_issuer``), exactly one ``aud`` equal to yours
   (``wrong_audience``), ``exp`` (``expired``), ``nbf`` (``not_yet_valid``), ``iat`` within
   ``max_age`` (``too_old``), ``jti`` not revoked (``revoked``);
4. what you require: PoG (``not_pog``), one of your zones (``wrong_zone``), your nonce
   (``wrong_nonce``), one of your workload hashes (``wrong_workload``), a ``cnf`` key
   (``wrong_key``), and at least ``min_tier`` in every submodule (``weak_tier``).

Verification uses nothing but the token, the JWKS and the caller's clock, so it runs offline.
Any standard JOSE library verifies the same signature from the JWKS alone (docs/tokens.md).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic_core import from_json

from geoattest.errors import JoseMalformed
from geoattest.jose import ES256, b64url_decode, es256_valid, parse_jws
from verifier.tokens.json_claims import (
    as_object,
    as_str,
    claim_int,
    claim_number,
    claim_object,
    claim_str,
    is_whole,
    utc_time,
)
from verifier.tokens.trusted_keys import TrustedKeys
from verifier.tokens.vocabulary import PROFILES, EarStatus, TokenType, WorkloadMeasure

__all__ = [
    "Expected",
    "GeoView",
    "RejectReason",
    "Rejected",
    "TokenVerdict",
    "TrustedKeys",
    "VerifiedToken",
    "verify_token",
]

HEADER_MEMBERS = frozenset({"alg", "typ", "kid"})
_TYPES = {kind.typ: kind for kind in TokenType}
_SUBMODS = {
    TokenType.POR: frozenset({"host", "workload"}),
    TokenType.POG: frozenset({"host", "workload", "geo"}),
}


class RejectReason(StrEnum):
    MALFORMED = "malformed"
    WRONG_ALG = "wrong_alg"
    WRONG_TYP = "wrong_typ"
    UNKNOWN_KID = "unknown_kid"
    BAD_SIGNATURE = "bad_signature"
    WRONG_ISSUER = "wrong_issuer"
    WRONG_AUDIENCE = "wrong_audience"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    TOO_OLD = "too_old"
    REVOKED = "revoked"
    NOT_POG = "not_pog"
    WRONG_ZONE = "wrong_zone"
    WRONG_NONCE = "wrong_nonce"
    WRONG_WORKLOAD = "wrong_workload"
    WRONG_KEY = "wrong_key"
    WEAK_TIER = "weak_tier"


@dataclass(frozen=True, slots=True, kw_only=True)
class Expected:
    """What the relying party requires of a token."""

    audience: str
    issuer: str | None = None
    require: TokenType = TokenType.POR  # a PoG token is also a PoR
    zones: frozenset[str] = frozenset()  # empty: any zone (PoG only)
    max_age: dt.timedelta | None = None  # iat no older than this
    min_tier: EarStatus = EarStatus.AFFIRMING
    nonce: bytes | None = None
    workloads: frozenset[bytes] = frozenset()  # empty: any executable hash
    cnf_jkt: str | None = None  # the key the caller proved; the token must be bound to it
    revoked: frozenset[str] = frozenset()  # jtis of the verifier's status document
    leeway: dt.timedelta = dt.timedelta(0)  # clock skew allowed on exp and nbf


@dataclass(frozen=True, slots=True, kw_only=True)
class GeoView:
    zone_id: str
    zone_name: str
    zone_version: int
    polygon_sha256: str
    decision: str
    distance_m: float | None
    latitude: float | None
    longitude: float | None
    accuracy_m: float | None
    fix_at: dt.datetime
    status: EarStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedToken:
    """A token that passed. The fields checks need are read (and type-checked) at once; the
    rest (``geo``, ``policy``, ``record_digest``, ``workload_measured_by``) from ``claims`` when
    asked, raising ``ValueError`` for a claim of the wrong type (a token only our verifier can
    sign carries none)."""

    type: TokenType
    kid: str
    issuer: str
    subject: str
    audience: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    jti: str
    nonce: bytes | None
    cnf_jkt: str | None
    status: EarStatus  # the weakest submodule's
    submods: Mapping[str, EarStatus]
    agent_id: str
    record_seq: int
    workload_sha256: bytes
    zone_id: str | None  # PoG: the zone the host is inside
    claims: Mapping[str, object] = field(default_factory=dict, repr=False)

    @property
    def record_digest(self) -> str:
        return as_str(claim_object(self.claims, "geoattest.record").get("digest"), "digest")

    @property
    def policy(self) -> str:
        """``<name>@<version>`` of the policy the host was judged by."""
        host = claim_object(
            claim_object(claim_object(self.claims, "submods"), "host"), "geoattest.host"
        )
        policy = claim_object(host, "policy")
        return f"{claim_str(policy, 'name')}@{claim_int(policy, 'version')}"

    @property
    def workload_measured_by(self) -> WorkloadMeasure:
        workload = claim_object(
            claim_object(claim_object(self.claims, "submods"), "workload"), "geoattest.workload"
        )
        return WorkloadMeasure(claim_str(workload, "measured_by"))

    @property
    def geo(self) -> GeoView | None:
        if self.type is not TokenType.POG:
            return None
        return _geo(claim_object(claim_object(self.claims, "submods"), "geo"), self.submods["geo"])


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejected:
    reason: RejectReason
    message: str


TokenVerdict = VerifiedToken | Rejected


class _Refuse(Exception):
    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def verify_token(
    token: str, keys: TrustedKeys, expected: Expected, now: dt.datetime
) -> TokenVerdict:
    """Check ``token`` (module docstring); ``now`` is an aware datetime."""
    try:
        return _verify(token, keys, expected, now)
    except _Refuse as e:
        return Rejected(reason=e.reason, message=e.message)


def _verify(token: str, keys: TrustedKeys, expected: Expected, now: dt.datetime) -> VerifiedToken:
    try:
        jws = parse_jws(token)
    except JoseMalformed as e:
        raise _Refuse(RejectReason.MALFORMED, e.message) from e
    header = jws.header
    if header.alg != ES256:
        raise _Refuse(RejectReason.WRONG_ALG, f"alg {header.alg[:20]!r} is not ES256")
    if header.members != HEADER_MEMBERS:
        extra = sorted(header.members - HEADER_MEMBERS) or sorted(HEADER_MEMBERS - header.members)
        raise _Refuse(RejectReason.MALFORMED, f"protected header must be alg, typ, kid: {extra}")
    kind = _TYPES.get(header.typ or "")
    if kind is None:
        raise _Refuse(
            RejectReason.WRONG_TYP, f"typ {str(header.typ)[:40]!r} is not por+jwt or pog+jwt"
        )
    kid = header.kid or ""
    public = keys.keys.get(kid)
    if public is None:
        raise _Refuse(RejectReason.UNKNOWN_KID, f"kid {kid[:60]!r} is not in the JWKS")
    if not es256_valid(public, jws.signing_input, jws.signature):
        raise _Refuse(RejectReason.BAD_SIGNATURE, f"signature does not verify with key {kid}")
    try:
        # pydantic-core's parser (jiter), not json.loads: half the time for a 2 KB payload, which
        # is a quarter of what this function adds to the raw signature check (ADR 21). It is
        # stricter, not looser: a lone surrogate escape or nesting past 200 levels is refused.
        claims = from_json(jws.payload)
    except (ValueError, RecursionError) as e:
        raise _Refuse(RejectReason.MALFORMED, f"payload is not JSON: {e}") from e
    if not isinstance(claims, dict):
        raise _Refuse(RejectReason.MALFORMED, "payload is not a JSON object")
    view = _read_claims(claims, kind, kid)
    _check_time_and_audience(view, expected, now)
    _check_requirements(view, expected)
    return view


def _check_time_and_audience(view: VerifiedToken, expected: Expected, now: dt.datetime) -> None:
    if expected.issuer is not None and view.issuer != expected.issuer:
        raise _Refuse(
            RejectReason.WRONG_ISSUER, f"issued by {view.issuer!r}, not {expected.issuer!r}"
        )
    if view.audience != expected.audience:
        raise _Refuse(
            RejectReason.WRONG_AUDIENCE, f"audience is {view.audience!r}, not {expected.audience!r}"
        )
    if view.expires_at <= now - expected.leeway:
        raise _Refuse(RejectReason.EXPIRED, f"expired at {view.expires_at.isoformat()}")
    nbf = view.claims["nbf"]
    assert isinstance(nbf, int)  # noqa: S101  # checked by _read_claims
    if nbf > (now + expected.leeway).timestamp():
        raise _Refuse(RejectReason.NOT_YET_VALID, f"not valid before {utc_time(nbf).isoformat()}")
    if expected.max_age is not None and now - view.issued_at > expected.max_age:
        raise _Refuse(
            RejectReason.TOO_OLD,
            f"issued {(now - view.issued_at).total_seconds():.0f} s ago; at most "
            f"{expected.max_age.total_seconds():.0f} s accepted",
        )
    if view.jti in expected.revoked:
        raise _Refuse(RejectReason.REVOKED, f"token {view.jti} is revoked by the verifier")


def _check_requirements(view: VerifiedToken, expected: Expected) -> None:
    if expected.require is TokenType.POG and view.type is not TokenType.POG:
        raise _Refuse(RejectReason.NOT_POG, "a Proof-of-Geofencing token is required; this is PoR")
    if expected.zones:
        if view.zone_id is None:
            raise _Refuse(RejectReason.NOT_POG, "zones are required; this token names none")
        if view.zone_id not in expected.zones:
            raise _Refuse(
                RejectReason.WRONG_ZONE,
                f"zone {view.zone_id!r} is not one of {', '.join(sorted(expected.zones))}",
            )
    if expected.nonce is not None and view.nonce != expected.nonce:
        raise _Refuse(
            RejectReason.WRONG_NONCE, "eat_nonce is not the nonce this relying party sent"
        )
    if expected.workloads and view.workload_sha256 not in expected.workloads:
        raise _Refuse(
            RejectReason.WRONG_WORKLOAD,
            f"workload sha256 {view.workload_sha256.hex()} is not one of the accepted executables",
        )
    if expected.cnf_jkt is not None and view.cnf_jkt != expected.cnf_jkt:
        raise _Refuse(
            RejectReason.WRONG_KEY, "the token is not bound (cnf.jkt) to the presented key"
        )
    weak = sorted(name for name, tier in view.submods.items() if tier.rank < expected.min_tier.rank)
    if weak:
        shown = ", ".join(f"{name}={view.submods[name].value}" for name in weak)
        raise _Refuse(RejectReason.WEAK_TIER, f"below {expected.min_tier.value}: {shown}")


# --- reading the claims (every type checked: a payload is untrusted until it is read) ------------


def _read_claims(claims: dict[str, Any], kind: TokenType, kid: str) -> VerifiedToken:
    """The claims a verdict depends on, every type checked (a payload is untrusted until read);
    indexing a claim that is missing or not an object ends in ``malformed``. ``Any`` stays in
    here: what leaves is typed."""
    if claims.get("eat_profile") != PROFILES[kind]:
        shown = str(claims.get("eat_profile"))[:80]
        raise _Refuse(RejectReason.WRONG_TYP, f"eat_profile {shown!r} is not a {kind.typ} profile")
    aud = claims.get("aud")
    if type(aud) is not str:
        raise _Refuse(RejectReason.WRONG_AUDIENCE, "aud must be exactly one audience (a string)")
    try:
        submods = claims["submods"]
        if type(submods) is not dict or submods.keys() != _SUBMODS[kind]:
            raise _Refuse(
                RejectReason.WRONG_TYP, f"a {kind.typ} token has submods {sorted(_SUBMODS[kind])}"
            )
        tiers = {name: _TIERS[submod["ear.status"]] for name, submod in submods.items()}
        record = claims["geoattest.record"]
        sha256 = bytes.fromhex(submods["workload"]["geoattest.workload"]["sha256"])
        nonce_text = claims.get("eat_nonce")
        cnf = claims.get("cnf")
        texts = (claims["iss"], claims["sub"], claims["jti"], record["agent_id"])
        numbers = (claims["iat"], claims["nbf"], claims["exp"], record["seq"])
        zone_id = None
        if kind is TokenType.POG:
            details = submods["geo"]["geoattest.geo"]
            zone_id = details["zone"]["id"]
            if details["decision"] != "inside":
                raise _Refuse(RejectReason.NOT_POG, "the zone decision is not inside")
            if type(zone_id) is not str:
                raise TypeError("zone id")
        cnf_jkt = None if cnf is None else cnf["jkt"]
        nonce = None if nonce_text is None else b64url_decode(nonce_text, "eat_nonce")
    except (KeyError, TypeError, ValueError, AttributeError, JoseMalformed) as e:
        raise _Refuse(RejectReason.MALFORMED, f"a claim is missing or malformed: {e}") from e
    if len(sha256) != 32:
        raise _Refuse(RejectReason.MALFORMED, "workload sha256 is not 32 bytes")
    # Spelled out rather than any(...) over generators: this runs for every token verified.
    iss, sub, jti, agent_id = texts
    if not (
        type(iss) is str
        and type(sub) is str
        and type(jti) is str
        and type(agent_id) is str
        and (cnf_jkt is None or type(cnf_jkt) is str)
    ):
        raise _Refuse(RejectReason.MALFORMED, "iss, sub, jti, agent_id and cnf.jkt are strings")
    iat, nbf, exp, seq = numbers
    if not (is_whole(iat) and is_whole(nbf) and is_whole(exp) and is_whole(seq)):
        raise _Refuse(RejectReason.MALFORMED, "iat, nbf, exp and seq are whole numbers")
    return VerifiedToken(
        type=kind,
        kid=kid,
        issuer=iss,
        subject=sub,
        audience=aud,
        issued_at=utc_time(iat),
        expires_at=utc_time(exp),
        jti=jti,
        nonce=nonce,
        cnf_jkt=cnf_jkt,
        status=min(tiers.values(), key=_RANKS.__getitem__),
        submods=tiers,
        agent_id=agent_id,
        record_seq=seq,
        workload_sha256=sha256,
        zone_id=zone_id,
        claims=claims,
    )


_TIERS = {tier.value: tier for tier in EarStatus}
_RANKS = {tier: tier.rank for tier in EarStatus}


def _geo(submod: dict[str, object], tier: EarStatus) -> GeoView:
    details = claim_object(submod, "geoattest.geo")
    zone = claim_object(details, "zone")
    decision = claim_str(details, "decision")
    if decision != "inside":
        raise _Refuse(RejectReason.NOT_POG, f"zone decision is {decision!r}, not inside")
    location = submod.get("location")
    point = as_object(location, "location") if location is not None else None
    distance = details.get("distance_m")
    return GeoView(
        zone_id=claim_str(zone, "id"),
        zone_name=claim_str(zone, "name"),
        zone_version=claim_int(zone, "version"),
        polygon_sha256=claim_str(zone, "polygon_sha256"),
        decision=decision,
        distance_m=None if distance is None else claim_number(details, "distance_m"),
        latitude=None if point is None else claim_number(point, "latitude"),
        longitude=None if point is None else claim_number(point, "longitude"),
        accuracy_m=None
        if point is None or "accuracy" not in point
        else claim_number(point, "accuracy"),
        fix_at=utc_time(claim_int(details, "fix_at")),
        status=tier,
    )
