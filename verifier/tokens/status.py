"""The signed revocation status: which tokens already out a relying party must refuse.

**Document** (``GET /v1/tokens/status``): a compact JWS signed with the active token key, header
exactly ``{"alg": "ES256", "typ": "token-status+jwt", "kid": …}``, payload
``{"iss", "iat", "exp", "revoked": [{"jti", "exp"}, …]}``: every token the verifier revoked
(because its agent failed, left ``attested`` or was removed) and that has not expired yet, oldest
expiry first. A relying party treats a document past its ``exp`` as absent.

**Freshness.** ``StatusPublisher`` signs a new document when the cached one is older than
``refresh`` (the round interval) or when a revocation event arrived (``invalidate``), so a failure
shows in the document within one round. ``read_status`` (pure) is the relying party's check; a
``typ`` of its own keeps a status document from ever being taken for a token, and the other way.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from geoattest.errors import JoseMalformed
from geoattest.jose import ES256, compact_json, encode_jws, es256_valid, parse_jws
from geoattest.wire_tokens import STATUS_TYP
from verifier.tokens.verify import Rejected, RejectReason, TrustedKeys

__all__ = ["RevocationStatus", "StatusPublisher", "read_status", "sign_status"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RevocationStatus:
    issuer: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    revoked: frozenset[str]


class _Signer(Protocol):  # the active key (``verifier.signing.keyring.SigningKey``)
    @property
    def kid(self) -> str: ...

    def sign(self, data: bytes) -> bytes: ...


def sign_status(
    *,
    issuer: str,
    now: dt.datetime,
    validity: dt.timedelta,
    revoked: Sequence[tuple[str, dt.datetime]],
    kid: str,
    sign: Callable[[bytes], bytes],
) -> str:
    issued = math.floor(now.timestamp())
    payload = {
        "iss": issuer,
        "iat": issued,
        "exp": issued + max(1, math.floor(validity.total_seconds())),
        "revoked": [{"jti": jti, "exp": math.ceil(exp.timestamp())} for jti, exp in revoked],
    }
    header = {"alg": ES256, "typ": STATUS_TYP, "kid": kid}
    return encode_jws(header, compact_json(payload), sign)


def read_status(
    document: str, keys: TrustedKeys, now: dt.datetime, *, issuer: str | None = None
) -> RevocationStatus | Rejected:
    """Check a status document: ES256 by a trusted key, ``typ`` ``token-status+jwt``, the
    expected issuer, not past its ``exp``. A ``Rejected`` says which check failed."""
    try:
        jws = parse_jws(document.strip())
    except JoseMalformed as e:
        return Rejected(reason=RejectReason.MALFORMED, message=e.message)
    header = jws.header
    if header.alg != ES256:
        return Rejected(reason=RejectReason.WRONG_ALG, message=f"alg {header.alg[:20]!r}")
    if header.typ != STATUS_TYP:
        return Rejected(reason=RejectReason.WRONG_TYP, message=f"typ is not {STATUS_TYP}")
    public = keys.keys.get(header.kid or "")
    if public is None:
        return Rejected(reason=RejectReason.UNKNOWN_KID, message="kid is not in the JWKS")
    if not es256_valid(public, jws.signing_input, jws.signature):
        return Rejected(reason=RejectReason.BAD_SIGNATURE, message="signature does not verify")
    try:
        body = json.loads(jws.payload)
        iss, iat, exp = body["iss"], int(body["iat"]), int(body["exp"])
        revoked = frozenset(str(item["jti"]) for item in body["revoked"])
    except (ValueError, KeyError, TypeError) as e:
        return Rejected(reason=RejectReason.MALFORMED, message=f"status payload: {e}")
    if issuer is not None and iss != issuer:
        return Rejected(reason=RejectReason.WRONG_ISSUER, message=f"issued by {iss!r}")
    expires = dt.datetime.fromtimestamp(exp, dt.UTC)
    if expires <= now:
        return Rejected(reason=RejectReason.EXPIRED, message="the status document is stale")
    return RevocationStatus(
        issuer=str(iss),
        issued_at=dt.datetime.fromtimestamp(iat, dt.UTC),
        expires_at=expires,
        revoked=revoked,
    )


class StatusPublisher:
    """The current signed document, re-signed after ``refresh`` or an ``invalidate``."""

    def __init__(
        self,
        *,
        issuer: str,
        revoked: Callable[[dt.datetime], Sequence[tuple[str, dt.datetime]]],
        signer: Callable[[], _Signer],
        refresh: dt.timedelta,
        validity: dt.timedelta,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._issuer = issuer
        self._revoked = revoked
        self._signer = signer
        self._refresh = refresh.total_seconds()
        self._validity = validity
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, int, str] | None = None  # (signed at, generation, document)
        self._generation = 0

    def invalidate(self) -> None:
        with self._lock:
            self._generation += 1

    def document(self) -> str:
        now = self._clock()
        with self._lock:
            cached, generation = self._cached, self._generation
        if cached is not None and cached[1] == generation and now - cached[0] < self._refresh:
            return cached[2]
        moment = dt.datetime.fromtimestamp(now, dt.UTC)
        key = self._signer()
        document = sign_status(
            issuer=self._issuer,
            now=moment,
            validity=self._validity,
            revoked=self._revoked(moment),
            kid=key.kid,
            sign=key.sign,
        )
        with self._lock:
            self._cached = (now, generation, document)
        return document
