"""``verify_token``: a genuine token is accepted, and each attack is refused with its own reason.
One attack per test; each fails if the check it targets is removed."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import replace

import pytest

from geoattest.jose import b64url, b64url_decode, compact_json, encode_jws, public_jwk
from tests.unit.verifier.tokens.issuing import (
    AUDIENCE,
    ISSUER,
    WORKLOAD,
    Passed,
    Signer,
    claims_for,
    issue,
    passed_round,
)
from verifier.tokens.claims import TokenClaims
from verifier.tokens.status import read_status, sign_status
from verifier.tokens.verify import (
    Expected,
    Rejected,
    RejectReason,
    TokenVerdict,
    VerifiedToken,
    verify_token,
)
from verifier.tokens.vocabulary import EarStatus, TokenType, WorkloadMeasure


@pytest.fixture(scope="module")
def pog() -> Passed:
    return passed_round(geo=True)


@pytest.fixture(scope="module")
def por() -> Passed:
    return passed_round(geo=False)


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer.new()


def _check(
    token: str, signer: Signer, claims: TokenClaims, *, later: float = 1.0, **expect: object
) -> TokenVerdict:
    expected = Expected(audience=AUDIENCE, issuer=ISSUER)
    expected = replace(expected, **expect)  # type: ignore[arg-type]  # test parameters
    now = claims.issued_at + dt.timedelta(seconds=later)
    return verify_token(token, signer.trusted(), expected, now)


def _reason(verdict: object) -> RejectReason:
    assert isinstance(verdict, Rejected), verdict
    return verdict.reason


def _forge(header: Mapping[str, object], body: Mapping[str, object], signature: bytes) -> str:
    return f"{b64url(compact_json(header))}.{b64url(compact_json(body))}.{b64url(signature)}"


def test_a_genuine_pog_token_is_accepted_with_everything_required(
    pog: Passed, signer: Signer
) -> None:
    claims = claims_for(pog, nonce=b"rp-nonce-1", cnf_jkt="the-jkt")
    verdict = _check(
        issue(signer, claims),
        signer,
        claims,
        require=TokenType.POG,
        zones=frozenset({"USA"}),
        max_age=dt.timedelta(seconds=10),
        nonce=b"rp-nonce-1",
        workloads=frozenset({WORKLOAD}),
        cnf_jkt="the-jkt",
    )
    assert isinstance(verdict, VerifiedToken), verdict
    assert verdict.type is TokenType.POG
    assert verdict.status is EarStatus.AFFIRMING
    assert verdict.geo is not None
    assert verdict.geo.zone_id == "USA"
    assert verdict.record_seq == pog.record.seq
    assert verdict.record_digest == pog.digest.hex()
    assert verdict.workload_measured_by is WorkloadMeasure.IMA_ALLOWLISTED


def test_alg_none_is_refused(pog: Passed, signer: Signer) -> None:
    claims = claims_for(pog)
    header = {"alg": "none", "typ": "pog+jwt", "kid": signer.kid}
    assert (
        _reason(_check(_forge(header, claims.body, b""), signer, claims)) is RejectReason.WRONG_ALG
    )


def test_hs256_keyed_with_the_public_key_is_refused(pog: Passed, signer: Signer) -> None:
    """The classic confusion: HMAC with the published key as the secret verifies in a library
    that picks the algorithm from the header."""
    claims = claims_for(pog)
    header = {"alg": "HS256", "typ": "pog+jwt", "kid": signer.kid}
    signing_input = f"{b64url(compact_json(header))}.{b64url(compact_json(claims.body))}"
    secret = json.dumps(public_jwk(signer.key.public_key())).encode()
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    assert (
        _reason(_check(f"{signing_input}.{b64url(mac)}", signer, claims)) is RejectReason.WRONG_ALG
    )


def test_another_jws_of_the_same_key_is_not_a_token(pog: Passed, signer: Signer) -> None:
    """Token confusion: the status document is signed by the token key too."""
    claims = claims_for(pog)
    status = sign_status(
        issuer=ISSUER,
        now=claims.issued_at,
        validity=dt.timedelta(seconds=10),
        revoked=[],
        kid=signer.kid,
        sign=signer.sign_raw,
    )
    assert _reason(_check(status, signer, claims)) is RejectReason.WRONG_TYP
    generic = signer.sign({"alg": "ES256", "typ": "JWT", "kid": signer.kid}, claims.body)
    assert _reason(_check(generic, signer, claims)) is RejectReason.WRONG_TYP


def test_a_por_token_relabelled_pog_is_refused(por: Passed, signer: Signer) -> None:
    """A PoR's claims under a pog+jwt header (signed by the same key: only the typ swapped)."""
    claims = claims_for(por, TokenType.POR)
    swapped = signer.sign({"alg": "ES256", "typ": "pog+jwt", "kid": signer.kid}, claims.body)
    assert _reason(_check(swapped, signer, claims)) is RejectReason.WRONG_TYP


def test_a_pog_token_relabelled_por_is_refused(pog: Passed, signer: Signer) -> None:
    claims = claims_for(pog)
    swapped = signer.sign({"alg": "ES256", "typ": "por+jwt", "kid": signer.kid}, claims.body)
    assert _reason(_check(swapped, signer, claims)) is RejectReason.WRONG_TYP


@pytest.mark.parametrize("member", ["jku", "jwk", "crit", "x5u"])
def test_header_members_beyond_alg_typ_kid_are_refused(
    pog: Passed, signer: Signer, member: str
) -> None:
    claims = claims_for(pog)
    header = {"alg": "ES256", "typ": "pog+jwt", "kid": signer.kid, member: "https://evil"}
    token = signer.sign(header, claims.body)
    assert _reason(_check(token, signer, claims)) is RejectReason.MALFORMED


def test_an_expired_token_is_refused(pog: Passed, signer: Signer) -> None:
    claims = claims_for(pog)
    lifetime = (claims.expires_at - claims.issued_at).total_seconds()
    token = issue(signer, claims)
    assert isinstance(_check(token, signer, claims, later=lifetime - 1), VerifiedToken)
    assert _reason(_check(token, signer, claims, later=lifetime)) is RejectReason.EXPIRED


def test_a_token_not_yet_valid_is_refused(pog: Passed, signer: Signer) -> None:
    claims = claims_for(pog)
    assert (
        _reason(_check(issue(signer, claims), signer, claims, later=-5))
        is RejectReason.NOT_YET_VALID
    )


def test_a_token_older_than_max_age_is_refused(pog: Passed, signer: Signer) -> None:
    claims = claims_for(pog)
    verdict = _check(
        issue(signer, claims), signer, claims, later=6, max_age=dt.timedelta(seconds=5)
    )
    assert _reason(verdict) is RejectReason.TOO_OLD


def test_a_token_for_another_audience_is_refused(pog: Passed, signer: Signer) -> None:
    claims = claims_for(pog)
    verdict = _check(issue(signer, claims), signer, claims, audience="other-service")
    assert _reason(verdict) is RejectReason.WRONG_AUDIENCE


def test_several_audiences_are_refused(pog: Passed, signer: Signer) -> None:
    claims = claims_for(pog)
    body = dict(claims.body, aud=[AUDIENCE, "other"])
    token = signer.sign({"alg": "ES256", "typ": "pog+jwt", "kid": signer.kid}, body)
    assert _reason(_check(token, signer, claims)) is RejectReason.WRONG_AUDIENCE


def test_a_token_of_another_issuer_is_refused(pog: Passed, signer: Signer) -> None:
    claims = claims_for(pog)
    verdict = _check(issue(signer, claims), signer, claims, issuer="https://other-verifier")
    assert _reason(verdict) is RejectReason.WRONG_ISSUER


def test_an_altered_token_is_refused(pog: Passed, signer: Signer) -> None:
    claims = claims_for(pog)
    head, body, signature = issue(signer, claims).split(".")
    payload = json.loads(b64url_decode(body))
    payload["submods"]["geo"]["geoattest.geo"]["zone"]["id"] = "DEU"
    altered = f"{head}.{b64url(compact_json(payload))}.{signature}"
    assert _reason(_check(altered, signer, claims)) is RejectReason.BAD_SIGNATURE


def test_a_token_signed_by_a_foreign_key_under_our_kid_is_refused(
    pog: Passed, signer: Signer
) -> None:
    claims = claims_for(pog)
    foreign = Signer.new()
    token = foreign.sign({"alg": "ES256", "typ": "pog+jwt", "kid": signer.kid}, claims.body)
    assert _reason(_check(token, signer, claims)) is RejectReason.BAD_SIGNATURE


def test_a_token_of_an_unknown_kid_is_refused(pog: Passed, signer: Signer) -> None:
    claims = claims_for(pog)
    foreign = Signer.new()
    assert _reason(_check(issue(foreign, claims), signer, claims)) is RejectReason.UNKNOWN_KID


def test_a_revoked_token_is_refused(pog: Passed, signer: Signer) -> None:
    claims = claims_for(pog)
    verdict = _check(issue(signer, claims), signer, claims, revoked=frozenset({claims.jti}))
    assert _reason(verdict) is RejectReason.REVOKED


def test_a_por_token_is_not_pog(por: Passed, signer: Signer) -> None:
    claims = claims_for(por, TokenType.POR)
    verdict = _check(issue(signer, claims), signer, claims, require=TokenType.POG)
    assert _reason(verdict) is RejectReason.NOT_POG
    assert isinstance(_check(issue(signer, claims), signer, claims), VerifiedToken)


def test_a_token_for_another_zone_is_refused(pog: Passed, signer: Signer) -> None:
    claims = claims_for(pog)
    verdict = _check(issue(signer, claims), signer, claims, zones=frozenset({"DEU", "FRA"}))
    assert _reason(verdict) is RejectReason.WRONG_ZONE


def test_a_weaker_tier_is_refused(pog: Passed, signer: Signer) -> None:
    claims = claims_for(pog, measured_by=WorkloadMeasure.AGENT)
    token = issue(signer, claims)
    assert _reason(_check(token, signer, claims)) is RejectReason.WEAK_TIER
    accepted = _check(token, signer, claims, min_tier=EarStatus.WARNING)
    assert isinstance(accepted, VerifiedToken)
    assert accepted.submods["workload"] is EarStatus.WARNING


def test_another_nonce_is_refused(pog: Passed, signer: Signer) -> None:
    claims = claims_for(pog, nonce=b"nonce-of-someone")
    verdict = _check(issue(signer, claims), signer, claims, nonce=b"my-own-nonce")
    assert _reason(verdict) is RejectReason.WRONG_NONCE


def test_another_executable_is_refused(pog: Passed, signer: Signer) -> None:
    claims = claims_for(pog)
    other = frozenset({hashlib.sha256(b"model-server v2").digest()})
    assert (
        _reason(_check(issue(signer, claims), signer, claims, workloads=other))
        is RejectReason.WRONG_WORKLOAD
    )


def test_a_token_bound_to_another_key_is_refused(pog: Passed, signer: Signer) -> None:
    claims = claims_for(pog, cnf_jkt="someone-elses-key")
    verdict = _check(issue(signer, claims), signer, claims, cnf_jkt="my-key")
    assert _reason(verdict) is RejectReason.WRONG_KEY
    unbound = claims_for(pog)
    assert (
        _reason(_check(issue(signer, unbound), signer, unbound, cnf_jkt="my-key"))
        is RejectReason.WRONG_KEY
    )


@pytest.mark.parametrize(
    "token", ["", "a.b", "a.b.c.d", "e30.e30.", "!!.e30.AA", "e30." + "A" * 70000 + ".AA"]
)
def test_garbage_is_malformed_never_an_exception(signer: Signer, token: str) -> None:
    verdict = verify_token(
        token, signer.trusted(), Expected(audience=AUDIENCE), dt.datetime.now(dt.UTC)
    )
    assert _reason(verdict) in (RejectReason.MALFORMED, RejectReason.WRONG_ALG)


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b'["an", "array"]',
        b'{"eat_profile": "x"} trailing',
        b"\xff\xfe",  # not UTF-8
        b'{"sub": "\\ud800"}',  # a lone surrogate escape
        b"[" * 500 + b"]" * 500,  # nesting no claim set has
    ],
    ids=["text", "array", "trailing", "not-utf8", "lone-surrogate", "deep"],
)
def test_a_signed_payload_that_is_not_a_json_object_is_malformed(
    pog: Passed, signer: Signer, payload: bytes
) -> None:
    """Signed by the trusted key, so only the payload's parse stands between it and the claims."""
    claims = claims_for(pog)
    header = {"alg": "ES256", "typ": "pog+jwt", "kid": signer.kid}
    token = encode_jws(header, payload, signer.sign_raw)
    assert _reason(_check(token, signer, claims)) is RejectReason.MALFORMED


def test_the_status_document_round_trips_and_is_not_a_token(pog: Passed, signer: Signer) -> None:
    now = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)
    expires = now + dt.timedelta(minutes=1)
    document = sign_status(
        issuer=ISSUER,
        now=now,
        validity=dt.timedelta(seconds=10),
        revoked=[("jti-1", expires), ("jti-2", expires)],
        kid=signer.kid,
        sign=signer.sign_raw,
    )
    status = read_status(document, signer.trusted(), now, issuer=ISSUER)
    assert not isinstance(status, Rejected), status
    assert status.revoked == {"jti-1", "jti-2"}
    stale = read_status(document, signer.trusted(), now + dt.timedelta(seconds=11))
    assert _reason(stale) is RejectReason.EXPIRED
    claims = claims_for(pog)
    token = issue(signer, claims)
    assert _reason(read_status(token, signer.trusted(), now)) is RejectReason.WRONG_TYP
    foreign = Signer.new()
    forged = sign_status(
        issuer=ISSUER, now=now, validity=dt.timedelta(seconds=10), revoked=[], kid=signer.kid,
        sign=foreign.sign_raw,
    )  # fmt: skip
    assert _reason(read_status(forged, signer.trusted(), now)) is RejectReason.BAD_SIGNATURE


def test_a_profile_of_the_other_type_is_refused(por: Passed, signer: Signer) -> None:
    """PoR claims and submodules under por+jwt, but the PoG profile: the profile check alone."""
    claims = claims_for(por, TokenType.POR)
    body = dict(claims.body, eat_profile=TokenType.POG.profile)
    token = signer.sign({"alg": "ES256", "typ": "por+jwt", "kid": signer.kid}, body)
    assert _reason(_check(token, signer, claims)) is RejectReason.WRONG_TYP


def test_submodules_of_the_other_type_are_refused(pog: Passed, signer: Signer) -> None:
    """PoG submodules (geo included) under por+jwt with the PoR profile: the submods check."""
    claims = claims_for(pog)
    body = dict(claims.body, eat_profile=TokenType.POR.profile)
    token = signer.sign({"alg": "ES256", "typ": "por+jwt", "kid": signer.kid}, body)
    assert _reason(_check(token, signer, claims)) is RejectReason.WRONG_TYP


def test_a_pog_token_whose_decision_is_not_inside_is_refused(pog: Passed, signer: Signer) -> None:
    claims = claims_for(pog)
    body = json.loads(json.dumps(claims.body))
    body["submods"]["geo"]["geoattest.geo"]["decision"] = "uncertain"
    token = signer.sign({"alg": "ES256", "typ": "pog+jwt", "kid": signer.kid}, body)
    assert _reason(_check(token, signer, claims)) is RejectReason.NOT_POG


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_coordinate_that_is_not_a_finite_number_is_malformed(
    pog: Passed, signer: Signer, value: float
) -> None:
    claims = claims_for(pog)
    body = json.loads(json.dumps(claims.body))
    body["submods"]["geo"]["location"]["latitude"] = value  # json.dumps writes NaN, Infinity
    token = signer.sign({"alg": "ES256", "typ": "pog+jwt", "kid": signer.kid}, body)
    verdict = _check(token, signer, claims)
    assert isinstance(verdict, VerifiedToken)  # the lazy geo view is where coordinates are read
    with pytest.raises(ValueError, match="latitude must be a finite number"):
        _ = verdict.geo
