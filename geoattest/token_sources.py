"""Where a relying party gets the verifier's keys and revocation status: a file or a URL.

``VerifierTrust`` keeps both for a service that checks tokens all day (the key service): the
JWKS is fetched again when a token names an unknown kid (at most once a second), the status
document whenever the one held is older than ``status_refresh`` seconds or past its ``exp``.
A status document that cannot be had is a reachability fault: nothing is released without it.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests

from geoattest.errors import GeoattestError, JoseMalformed, VerifierUnreachable
from geoattest.jose import parse_jws
from verifier.tokens.status import RevocationStatus, read_status
from verifier.tokens.verify import Rejected, TrustedKeys

__all__ = ["VerifierTrust", "load_jwks", "load_status", "read_source"]

JWKS_PATH = "/.well-known/jwks.json"
STATUS_PATH = "/v1/tokens/status"


def read_source(source: str, *, timeout: float = 10.0) -> bytes:
    """The bytes of a file path or an http(s) URL."""
    if source.startswith(("http://", "https://")):
        try:
            response = requests.get(source, timeout=timeout)
        except requests.RequestException as e:
            raise VerifierUnreachable(f"{source}: {e}") from e
        if response.status_code != 200:
            raise VerifierUnreachable(f"{source}: HTTP {response.status_code}")
        return response.content
    try:
        return Path(source).read_bytes()
    except OSError as e:
        raise VerifierUnreachable(f"{source}: {e.strerror or e}") from e


def load_jwks(source: str) -> TrustedKeys:
    return TrustedKeys.from_jwks(read_source(source))


def load_status(source: str, keys: TrustedKeys, now: dt.datetime) -> RevocationStatus:
    status = read_status(read_source(source).decode("ascii", "replace"), keys, now)
    if isinstance(status, Rejected):
        raise JoseMalformed(f"revocation status {source}: {status.reason.value}: {status.message}")
    return status


class VerifierTrust:
    def __init__(
        self,
        verifier_url: str,
        *,
        status_refresh: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._base = verifier_url.rstrip("/")
        self._refresh = status_refresh
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: TrustedKeys | None = None
        self._keys_at = 0.0
        self._status: tuple[float, RevocationStatus] | None = None

    def keys(self, kid: str | None = None) -> TrustedKeys:
        """The JWKS, fetched again if ``kid`` is not in it (at most once a second)."""
        with self._lock:
            keys, fetched = self._keys, self._keys_at
        if keys is not None and (kid is None or kid in keys.keys):
            return keys
        if keys is not None and self._clock() - fetched < 1.0:
            return keys
        keys = load_jwks(self._base + JWKS_PATH)
        with self._lock:
            self._keys, self._keys_at = keys, self._clock()
        return keys

    def keys_for(self, token: str) -> TrustedKeys:
        try:
            kid = parse_jws(token).header.kid
        except GeoattestError:
            kid = None
        return self.keys(kid)

    def revoked(self) -> frozenset[str]:
        now = self._clock()
        with self._lock:
            held = self._status
        if (
            held is not None
            and now - held[0] < self._refresh
            and held[1].expires_at.timestamp() > now
        ):
            return held[1].revoked
        moment = dt.datetime.fromtimestamp(now, dt.UTC)
        status = load_status(self._base + STATUS_PATH, self.keys(), moment)
        with self._lock:
            self._status = (now, status)
        return status.revoked
