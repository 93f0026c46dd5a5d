"""Token messages between workload, agent and verifier, and the bindings both ends derive alike.

- Agent → verifier (``/v1/token-sessions``, ``/v1/tokens``): the agent opens a *token session*
  with a TPM quote whose qualifying data binds the verifier's challenge and a session key
  (``token_session_qualifying_data``); every token request is then a compact JWS signed by that
  key (``TokenRequestClaims``, ``typ`` ``TOKEN_REQUEST_TYP``, ``kid`` = the session id).
- Workload → agent (the workload API on a Unix socket): ``WorkloadTokenRequest``. A ``cnf`` key
  comes with a proof, a JWS by that key over what is asked (``CnfProofClaims``), checked by
  ``check_cnf_proof`` on the agent and again on the verifier.

This module is a leaf: of the project it imports only the other leaves (errors, jose, wire).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Annotated, Literal

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from geoattest.errors import CnfProofInvalid, JoseMalformed
from geoattest.jose import (
    ES256,
    b64url_decode,
    encode_jws,
    es256_sign,
    es256_valid,
    jwk_public_key,
    parse_jws,
    public_jwk,
    thumbprint,
)
from geoattest.wire import AgentId, BankName, HexDigest, PcrIndexText, QuoteWire

__all__ = [
    "CNF_PROOF_TYP",
    "STATUS_TYP",
    "TOKEN_REQUEST_TYP",
    "WORKLOAD_HEADER",
    "CnfProofClaims",
    "CnfWire",
    "PublicJwk",
    "TokenChallengeRequest",
    "TokenChallengeView",
    "TokenRequestClaims",
    "TokenSessionRequest",
    "TokenSessionView",
    "TokenView",
    "WorkloadTokenRequest",
    "WorkloadTokenView",
    "WorkloadWire",
    "check_cnf_proof",
    "decode_nonce",
    "make_cnf",
    "token_session_qualifying_data",
]

TOKEN_REQUEST_TYP = "geoattest-token-request+jwt"  # noqa: S105  # a JWS typ, not a secret
CNF_PROOF_TYP = "geoattest-cnf-proof+jwt"
STATUS_TYP = "token-status+jwt"  # a JWS typ
WORKLOAD_HEADER = "Geoattest-Workload"  # must be "true" on every workload API request
PROOF_WINDOW = dt.timedelta(seconds=60)  # how far a signed request's iat may be from now
MIN_NONCE_BYTES, MAX_NONCE_BYTES = 8, 48  # a fresh round's nonce is this ‖ 16 random bytes

Hex32 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
B64UrlText = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]*$", max_length=4096)]
Audience = Annotated[str, Field(pattern=r"^[\x21-\x7e]{1,256}$")]  # printable, no spaces
TokenTypeText = Literal["por", "pog"]
SessionId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{16,64}$")]


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class PublicJwk(_Wire):
    """An EC P-256 public JWK (its other members are ignored)."""

    kty: Literal["EC"]
    crv: Literal["P-256"]
    x: B64UrlText
    y: B64UrlText

    def members(self) -> dict[str, str]:
        return {"kty": self.kty, "crv": self.crv, "x": self.x, "y": self.y}


class TokenChallengeRequest(_Wire):
    agent_id: AgentId


class TokenChallengeView(_Wire):
    challenge: Hex32
    expires_at: dt.datetime
    pcrs: dict[BankName, list[int]]  # what to quote (only the qualifying data matters)


class TokenSessionRequest(_Wire):
    agent_id: AgentId
    challenge: Hex32
    public_jwk: PublicJwk  # the session key; its thumbprint is bound into the quote
    quote: QuoteWire
    pcrs: dict[BankName, dict[PcrIndexText, HexDigest]]


class TokenSessionView(_Wire):
    session_id: SessionId
    expires_at: dt.datetime


class WorkloadWire(_Wire):
    sha256: Hex32  # of the calling process's executable, as the agent read it
    path: Annotated[str, Field(max_length=4096)] | None = None


class CnfWire(_Wire):
    """The workload's public key and its proof of possession (a compact JWS by that key)."""

    jwk: PublicJwk
    proof: Annotated[str, Field(max_length=4096)]


class TokenRequestClaims(_Wire):
    """The payload of a token request JWS (signed by the agent's session key)."""

    agent_id: AgentId
    type: TokenTypeText
    audience: Audience
    workload: WorkloadWire
    cnf: CnfWire | None = None
    nonce: B64UrlText | None = None  # a relying party's nonce: run a fresh round for it
    iat: int
    jti: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{16,64}$")]


class TokenView(_Wire):
    token: str
    type: TokenTypeText
    jti: str
    expires_at: dt.datetime
    record_seq: int


class WorkloadTokenRequest(_Wire):
    """What a workload asks its agent for. Who it is comes from the socket, never from here:
    any other field (a claimed hash or pid) is ignored."""

    type: TokenTypeText = "por"
    audience: Audience
    nonce: B64UrlText | None = None
    cnf: CnfWire | None = None


class WorkloadTokenView(_Wire):
    token: str
    type: TokenTypeText
    expires_at: dt.datetime
    workload_sha256: Hex32
    cached: bool


class CnfProofClaims(_Wire):
    aud: Audience
    type: TokenTypeText
    iat: int
    nonce: B64UrlText | None = None


def token_session_qualifying_data(agent_id: str, challenge: bytes, session_jkt: str) -> bytes:
    """The quote's extraData that opens a token session, derived alike by agent and verifier:
    ``SHA-256("geoattest-token-session-v1" ‖ 0 ‖ agent id ‖ 0 ‖ challenge ‖ JWK thumbprint)``."""
    return hashlib.sha256(
        b"geoattest-token-session-v1\x00"
        + agent_id.encode("ascii")
        + b"\x00"
        + challenge
        + session_jkt.encode("ascii")
    ).digest()


def decode_nonce(text: str | None) -> bytes | None:
    """A relying party's nonce from base64url; ``CnfProofInvalid`` is not the error here:
    ``JoseMalformed`` for bad base64url or a length outside 8..48 bytes."""
    if text is None:
        return None
    nonce = b64url_decode(text, "nonce")
    if not MIN_NONCE_BYTES <= len(nonce) <= MAX_NONCE_BYTES:
        raise JoseMalformed(f"nonce must be {MIN_NONCE_BYTES}-{MAX_NONCE_BYTES} bytes")
    return nonce


def make_cnf(
    key: ec.EllipticCurvePrivateKey,
    *,
    audience: str,
    kind: str,
    nonce: str | None = None,
    now: dt.datetime,
) -> CnfWire:
    """A ``cnf`` key with its proof of possession (what ``check_cnf_proof`` accepts)."""
    claims = CnfProofClaims(
        aud=audience,
        type=kind,  # type: ignore[arg-type]  # checked by the model
        iat=int(now.timestamp()),
        nonce=nonce,
    )
    proof = encode_jws(
        {"alg": ES256, "typ": CNF_PROOF_TYP},
        claims.model_dump_json(exclude_none=True).encode(),
        lambda data: es256_sign(key, data),
    )
    return CnfWire(jwk=PublicJwk.model_validate(public_jwk(key.public_key())), proof=proof)


def check_cnf_proof(
    cnf: CnfWire, *, audience: str, kind: str, nonce: str | None, now: dt.datetime
) -> str:
    """The RFC 7638 thumbprint of ``cnf.jwk`` once its proof holds: a compact JWS (ES256,
    ``typ`` ``CNF_PROOF_TYP``) by that key over ``CnfProofClaims`` naming this audience, token
    type (``kind``) and nonce, issued within a minute of ``now``. ``CnfProofInvalid`` otherwise."""
    try:
        public = jwk_public_key(cnf.jwk.members())
        jws = parse_jws(cnf.proof)
    except JoseMalformed as e:
        raise CnfProofInvalid(f"cnf: {e.message}") from e
    if jws.header.alg != ES256 or jws.header.typ != CNF_PROOF_TYP:
        raise CnfProofInvalid(f"cnf proof must be an ES256 JWS of typ {CNF_PROOF_TYP}")
    if not es256_valid(public, jws.signing_input, jws.signature):
        raise CnfProofInvalid("cnf proof is not signed by the cnf key")
    try:
        claims = CnfProofClaims.model_validate(json.loads(jws.payload))
    except (ValueError, ValidationError) as e:
        raise CnfProofInvalid("cnf proof payload is not a proof of this request") from e
    if claims.aud != audience or claims.type != kind or claims.nonce != nonce:
        raise CnfProofInvalid("cnf proof was made for another audience, type or nonce")
    if abs(now.timestamp() - claims.iat) > PROOF_WINDOW.total_seconds():
        raise CnfProofInvalid("cnf proof is not from the last minute")
    return thumbprint(public)
