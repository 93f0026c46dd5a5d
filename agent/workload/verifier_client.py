"""The agent's client of the verifier's token API: a TPM-bound session, then signed requests.

The session key is a P-256 key made in memory when the session opens and never written to disk;
the TPM quote that opens the session binds its thumbprint (ADR 8). A request refused with
``token_session_unknown`` (the session expired, was dropped on a revocation, or the node
rebooted) opens a new session once and is sent again. The verifier's JWKS is fetched when a kid
is unknown (at most once a second), and used to check every token and status document before
the agent caches or acts on it.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import requests
from cryptography.hazmat.primitives.asymmetric import ec

from agent.tpm_device import TpmQuote
from geoattest.errors import (
    GeoattestError,
    JoseMalformed,
    TokenSessionUnknown,
    VerifierUnreachable,
    error_from_code,
)
from geoattest.jose import (
    ES256,
    encode_jws,
    es256_sign,
    es256_valid,
    jwk_public_key,
    parse_jws,
    public_jwk,
    thumbprint,
)
from geoattest.pcr_banks import PcrBank
from geoattest.wire import QuoteWire
from geoattest.wire_tokens import (
    STATUS_TYP,
    TOKEN_REQUEST_TYP,
    CnfWire,
    PublicJwk,
    TokenChallengeView,
    TokenRequestClaims,
    TokenSessionView,
    TokenView,
    WorkloadWire,
    token_session_qualifying_data,
)

__all__ = ["SessionQuoter", "TokenRequest", "VerifierTokenClient"]

log = logging.getLogger(__name__)

JWKS_MIN_INTERVAL = 1.0
JWKS_MAX_BYTES = 64 * 1024  # a few keys are a few KB
_TOKEN_TYPS = frozenset({"por+jwt", "pog+jwt"})


class SessionQuoter(Protocol):
    """A TPM quote with the AK (``agent.evidence.EvidenceService.quote``)."""

    def quote(self, nonce: bytes, pcrs: Mapping[PcrBank, Sequence[int]]) -> TpmQuote: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenRequest:
    workload_sha256: bytes
    workload_path: str | None
    type: str
    audience: str
    nonce: str | None = None
    cnf: CnfWire | None = None


@dataclass(slots=True)
class _Session:
    session_id: str
    key: ec.EllipticCurvePrivateKey
    expires_at: float


class VerifierTokenClient:
    def __init__(
        self,
        base_url: str,
        agent_id: str,
        quoter: SessionQuoter,
        *,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._base = base_url.rstrip("/")
        self.agent_id = agent_id
        self._quoter = quoter
        self._timeout = timeout
        self._clock = clock
        self._http = requests.Session()
        self._session: _Session | None = None
        self._session_lock = threading.Lock()
        self._keys: dict[str, ec.EllipticCurvePublicKey] = {}
        self._keys_fetched = 0.0  # when the last fetch ended
        self._keys_failure: VerifierUnreachable | JoseMalformed | None = None  # the last fetch's
        self._keys_lock = threading.Lock()
        self._fetch_lock = threading.Lock()

    # --- tokens ---------------------------------------------------------------------------------

    def request(self, order: TokenRequest) -> TokenView:
        """A token from the verifier; raises its refusal as our error class."""
        for attempt in (1, 2):
            session = self._current_session()
            try:
                return self._request(session, order)
            except TokenSessionUnknown:
                with self._session_lock:
                    if self._session is session:
                        self._session = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _request(self, session: _Session, order: TokenRequest) -> TokenView:
        claims = TokenRequestClaims(
            agent_id=self.agent_id,
            type=order.type,  # type: ignore[arg-type]  # validated by the model
            audience=order.audience,
            workload=WorkloadWire(sha256=order.workload_sha256.hex(), path=order.workload_path),
            cnf=order.cnf,
            nonce=order.nonce,
            iat=int(self._clock()),
            jti=secrets.token_urlsafe(16),
        )
        header = {"alg": ES256, "typ": TOKEN_REQUEST_TYP, "kid": session.session_id}
        payload = claims.model_dump_json(exclude_none=True).encode()
        body = encode_jws(header, payload, lambda data: es256_sign(session.key, data))
        answer = self._post("/v1/tokens", body.encode(), "application/jose")
        view = TokenView.model_validate(answer)
        self.check_token(view.token)
        return view

    def check_token(self, token: str) -> dict[str, object]:
        """The claims of a token the verifier returned, once its signature holds with the
        verifier's JWKS (``JoseMalformed`` otherwise: never cached, never served)."""
        jws = parse_jws(token)
        if jws.header.alg != ES256 or jws.header.typ not in _TOKEN_TYPS:
            raise JoseMalformed("the verifier answered with something that is not a token")
        if not es256_valid(self._key(jws.header.kid or ""), jws.signing_input, jws.signature):
            raise JoseMalformed("the token's signature does not verify with the verifier's JWKS")
        claims: dict[str, object] = json.loads(jws.payload)
        return claims

    def revoked(self) -> frozenset[str]:
        """The jtis of the verifier's signed revocation status (checked with the JWKS)."""
        try:
            response = self._http.get(f"{self._base}/v1/tokens/status", timeout=self._timeout)
        except requests.RequestException as e:
            raise VerifierUnreachable(f"verifier at {self._base}: {e}") from e
        if response.status_code != 200:
            raise VerifierUnreachable(f"status document: HTTP {response.status_code}")
        jws = parse_jws(response.text.strip())
        if jws.header.alg != ES256 or jws.header.typ != STATUS_TYP:
            raise JoseMalformed("the status document is not a token-status+jwt")
        if not es256_valid(self._key(jws.header.kid or ""), jws.signing_input, jws.signature):
            raise JoseMalformed("the status document's signature does not verify")
        body = json.loads(jws.payload)
        if int(body["exp"]) <= self._clock():
            raise JoseMalformed("the status document is stale")
        return frozenset(str(item["jti"]) for item in body["revoked"])

    def close(self) -> None:
        self._http.close()

    # --- the session ----------------------------------------------------------------------------

    def _current_session(self) -> _Session:
        with self._session_lock:
            session = self._session
            if session is None or session.expires_at - 30 <= self._clock():
                session = self._session = self._open_session()
            return session

    def _open_session(self) -> _Session:
        answer = self._post(
            "/v1/token-sessions/challenge",
            json.dumps({"agent_id": self.agent_id}).encode(),
            "application/json",
        )
        challenge = TokenChallengeView.model_validate(answer)
        key = ec.generate_private_key(ec.SECP256R1())
        nonce = token_session_qualifying_data(
            self.agent_id, bytes.fromhex(challenge.challenge), thumbprint(key.public_key())
        )
        quoted = self._quoter.quote(nonce, challenge.pcrs)
        body = {
            "agent_id": self.agent_id,
            "challenge": challenge.challenge,
            "public_jwk": PublicJwk.model_validate(public_jwk(key.public_key())).model_dump(),
            "quote": QuoteWire(attest=quoted.attest, signature=quoted.signature).model_dump(
                mode="json"
            ),
            "pcrs": {
                bank: {str(index): value.hex() for index, value in values.items()}
                for bank, values in quoted.pcrs.items()
            },
        }
        view = TokenSessionView.model_validate(
            self._post("/v1/token-sessions", json.dumps(body).encode(), "application/json")
        )
        log.info("token session %s… opened", view.session_id[:6])
        return _Session(session_id=view.session_id, key=key, expires_at=view.expires_at.timestamp())

    # --- HTTP -----------------------------------------------------------------------------------

    def _post(self, path: str, body: bytes, content_type: str) -> object:
        try:
            response = self._http.post(
                self._base + path,
                data=body,
                headers={"Content-Type": content_type},
                timeout=self._timeout,
            )
        except requests.RequestException as e:
            raise VerifierUnreachable(f"verifier at {self._base}: {e}") from e
        try:
            answer: object = response.json()
        except ValueError as e:
            raise VerifierUnreachable(f"verifier answered {response.status_code}, not JSON") from e
        if response.status_code >= 400:
            raise _refusal(answer, response.status_code)
        return answer

    def _key(self, kid: str) -> ec.EllipticCurvePublicKey:
        with self._keys_lock:
            key = self._keys.get(kid)
        if key is not None:
            return key
        # One fetch at a time, and a caller that waited through one takes its outcome (the key,
        # its absence, or its failure) instead of fetching again: the status poll and a token
        # request meet a new kid together, and waiters must neither read the first one's rate
        # limit as "not in the JWKS" nor queue up behind a slow verifier one fetch each. The
        # interval counts from the end of a fetch, so every caller that waited is within it.
        with self._fetch_lock:
            with self._keys_lock:
                key = self._keys.get(kid)
                recent = self._clock() - self._keys_fetched < JWKS_MIN_INTERVAL
                failure = self._keys_failure
            if key is not None:
                return key
            if recent:
                if failure is not None:  # a copy: one exception object raised in one thread
                    raise type(failure)(failure.message)
                raise JoseMalformed(f"kid {kid[:40]!r} is not in the verifier's JWKS")
            try:
                keys = self._fetch_keys()
            except (VerifierUnreachable, JoseMalformed) as e:
                self._fetched(None, e)
                raise
            self._fetched(keys, None)
        if kid not in keys:
            raise JoseMalformed(f"kid {kid[:40]!r} is not in the verifier's JWKS")
        return keys[kid]

    def _fetched(
        self,
        keys: dict[str, ec.EllipticCurvePublicKey] | None,
        failure: VerifierUnreachable | JoseMalformed | None,
    ) -> None:
        with self._keys_lock:
            if keys is not None:
                self._keys = keys
            self._keys_failure = failure
            self._keys_fetched = self._clock()

    def _fetch_keys(self) -> dict[str, ec.EllipticCurvePublicKey]:
        """The verifier's JWKS, read within one ``timeout`` in all and at most
        ``JWKS_MAX_BYTES`` (a verifier that trickles cannot hold the fetch lock for long)."""
        url = f"{self._base}/.well-known/jwks.json"
        deadline = time.monotonic() + self._timeout
        try:
            with self._http.get(url, timeout=self._timeout, stream=True) as response:
                body = bytearray()
                # read1: what has arrived (up to 4 KB), not a wait for a full 4 KB
                while chunk := response.raw.read1(4096, decode_content=True):
                    body += chunk
                    if len(body) > JWKS_MAX_BYTES:
                        raise VerifierUnreachable(f"verifier JWKS at {self._base} is too large")
                    if time.monotonic() > deadline:
                        raise VerifierUnreachable(
                            f"verifier JWKS at {self._base} not read within {self._timeout} s"
                        )
            items = json.loads(bytes(body))["keys"]
        except (requests.RequestException, ValueError, KeyError, TypeError) as e:
            raise VerifierUnreachable(f"verifier JWKS at {self._base}: {e}") from e
        try:
            return {str(item["kid"]): jwk_public_key(item) for item in items if "kid" in item}
        except (KeyError, TypeError) as e:  # a bad key itself stays JoseMalformed
            raise VerifierUnreachable(f"verifier JWKS at {self._base}: {e!r}") from e


def _refusal(answer: object, status: int) -> GeoattestError:
    try:
        error = answer["error"]  # type: ignore[index]  # checked below
        code, message = str(error["code"]), str(error["message"])
    except (KeyError, TypeError):
        return VerifierUnreachable(f"verifier answered {status} without an error body")
    if status >= 500 and code == "internal_error":
        return VerifierUnreachable(f"verifier failed: {message}")
    return error_from_code(code, message)
