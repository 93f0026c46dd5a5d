"""Tokens for local workloads: asked of the verifier in the caller's name, cached, renewed,
dropped on revocation.

- **Cache** per (executable SHA-256, token type, audience, ``cnf`` key thumbprint). A cached token
  is served until its *renewal time*, half its lifetime with ±10 % jitter (so a fleet's workloads
  do not renew in step); after it a request asks the verifier again, and if the verifier cannot
  be reached the cached token is still served until shortly before it is no longer valid.
- **Never past validity**: a token is served only before its ``exp`` (less a margin); a PoG token
  also only before its fix's age limit (``fix_at`` + ``fix_max_age_s`` of its geo submodule),
  which the verifier already folds into ``exp``.
- **Revocation**: a background thread reads the verifier's signed status document every
  ``poll_seconds`` and drops cached tokens it lists; the verifier also refuses new ones.
- Requests with a relying party's nonce are never cached: each is a fresh round.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.workload.peer import Caller
from agent.workload.verifier_client import TokenRequest, VerifierTokenClient
from geoattest.errors import GeoattestError, ReachabilityError
from geoattest.wire_tokens import WorkloadTokenRequest, WorkloadTokenView, check_cnf_proof

__all__ = ["CachedToken", "WorkloadTokens"]

log = logging.getLogger(__name__)

SERVE_MARGIN = 1.0  # seconds before exp a cached token is no longer handed out
RENEW_JITTER = 0.1  # of the lifetime, either side of the half-life

_Key = tuple[bytes, str, str, str | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class CachedToken:
    token: str
    type: str
    jti: str
    issued_at: float
    serve_until: float
    renew_at: float


class WorkloadTokens:
    def __init__(
        self,
        client: VerifierTokenClient,
        *,
        poll_seconds: float,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._client = client
        self._poll = poll_seconds
        self._clock = clock
        self._jitter = jitter
        self._cache: dict[_Key, CachedToken] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    def get(self, caller: Caller, request: WorkloadTokenRequest) -> WorkloadTokenView:
        """A token naming the caller's executable (``caller.sha256``: from the kernel, not from
        the request). ``CnfProofInvalid`` for a ``cnf`` key without a valid proof."""
        now = self._clock()
        jkt = None
        if request.cnf is not None:
            jkt = check_cnf_proof(
                request.cnf,
                audience=request.audience,
                kind=request.type,
                nonce=request.nonce,
                now=dt.datetime.fromtimestamp(now, dt.UTC),
            )
        key: _Key = (caller.sha256, request.type, request.audience, jkt)
        cached = None if request.nonce is not None else self._cached(key, now)
        if cached is not None and now < cached.renew_at:
            return self._view(cached, caller, cached=True)
        order = TokenRequest(
            workload_sha256=caller.sha256,
            workload_path=None,
            type=request.type,
            audience=request.audience,
            nonce=request.nonce,
            cnf=request.cnf,
        )
        try:
            fresh = self._fetch(order)
        except ReachabilityError:
            if cached is not None:
                log.warning("verifier unreachable; serving a cached token until it expires")
                return self._view(cached, caller, cached=True)
            raise
        if request.nonce is None:
            with self._lock:
                self._cache[key] = fresh
        return self._view(fresh, caller, cached=False)

    def drop(self, jtis: frozenset[str]) -> int:
        """Forget cached tokens whose jti is revoked; returns how many."""
        with self._lock:
            gone = [key for key, item in self._cache.items() if item.jti in jtis]
            for key in gone:
                del self._cache[key]
        if gone:
            log.info("dropped %d revoked token(s) from the cache", len(gone))
        return len(gone)

    def cached_count(self) -> int:
        with self._lock:
            return len(self._cache)

    def start(self) -> None:
        """Start reading the revocation status in the background."""
        self._poller = threading.Thread(target=self._poll_loop, name="token-status", daemon=True)
        self._poller.start()

    def close(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)

    # --- internals ------------------------------------------------------------------------------

    def _cached(self, key: _Key, now: float) -> CachedToken | None:
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and now >= cached.serve_until:
                del self._cache[key]
                return None
            return cached

    def _fetch(self, order: TokenRequest) -> CachedToken:
        view = self._client.request(order)
        claims = self._client.check_token(view.token)
        issued = float(_int(claims, "iat"))
        until = float(_int(claims, "exp"))
        geo = _geo_details(claims)
        if geo is not None:  # the verifier folds this into exp; the agent holds it too
            until = min(until, float(_int(geo, "fix_at") + _int(geo, "fix_max_age_s")))
        lifetime = max(until - issued, 0.0)
        renew = issued + lifetime * (0.5 + RENEW_JITTER * (2 * self._jitter() - 1))
        return CachedToken(
            token=view.token,
            type=view.type,
            jti=view.jti,
            issued_at=issued,
            serve_until=until - SERVE_MARGIN,
            renew_at=renew,
        )

    def _view(self, item: CachedToken, caller: Caller, *, cached: bool) -> WorkloadTokenView:
        return WorkloadTokenView(
            token=item.token,
            type=item.type,  # type: ignore[arg-type]  # "por" or "pog", as asked
            expires_at=dt.datetime.fromtimestamp(item.serve_until + SERVE_MARGIN, dt.UTC),
            workload_sha256=caller.sha256.hex(),
            cached=cached,
        )

    def _poll_loop(self) -> None:
        while not self._stop.wait(self._poll):
            try:
                self.drop(self._client.revoked())
            except GeoattestError as e:
                log.warning("revocation status not read: %s", e.message)
            except Exception:  # the poller must outlive any bad answer
                log.exception("revocation status not read")


def _int(body: dict[str, object], name: str) -> int:
    value = body.get(name)
    if not isinstance(value, int):
        raise ValueError(f"token claim {name} is not an integer")
    return value


def _geo_details(claims: dict[str, object]) -> dict[str, object] | None:
    submods = claims.get("submods")
    geo = submods.get("geo") if isinstance(submods, dict) else None
    details = geo.get("geoattest.geo") if isinstance(geo, dict) else None
    return details if isinstance(details, dict) else None
