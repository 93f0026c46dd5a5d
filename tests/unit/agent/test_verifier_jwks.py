"""The workload side's copy of the verifier's JWKS, against a real HTTP server on loopback: two
threads that meet a new kid at once (the revocation-status poll and a token request) both get
the key from one fetch; neither takes the other's fetch for "not in the JWKS"."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from agent.tpm_device import TpmQuote
from agent.workload.verifier_client import VerifierTokenClient
from geoattest.errors import JoseMalformed, VerifierUnreachable
from geoattest.jose import encode_jws, es256_sign, public_jwk, thumbprint
from geoattest.pcr_banks import PcrBank

SLOW_ANSWER_SECONDS = 0.5


class _Jwks:
    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self.body = json.dumps(
            {"keys": [{**public_jwk(key.public_key()), "kid": thumbprint(key.public_key())}]}
        ).encode()
        self.fetches = 0
        self.status = 200
        self.delay = SLOW_ANSWER_SECONDS
        self.drip_seconds = 0.0  # > 0: the body one byte at a time, this far apart


@pytest.fixture
def signer() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def jwks(signer: ec.EllipticCurvePrivateKey) -> Iterator[tuple[str, _Jwks]]:
    published = _Jwks(signer)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's naming
            published.fetches += 1
            time.sleep(published.delay)  # long enough for the other callers to arrive
            body = published.body if published.status == 200 else b"<html>down</html>"
            self.send_response(published.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not published.drip_seconds:
                self.wfile.write(body)
                return
            for byte in body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(published.drip_seconds)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", published
    finally:
        server.shutdown()
        server.server_close()


class _NoQuotes:
    """These tests check tokens; they open no session, so nothing quotes."""

    def quote(self, nonce: bytes, pcrs: Mapping[PcrBank, Sequence[int]]) -> TpmQuote:
        raise AssertionError("no session is opened here")


def _token(signer: ec.EllipticCurvePrivateKey) -> str:
    header = {"alg": "ES256", "typ": "por+jwt", "kid": thumbprint(signer.public_key())}
    return encode_jws(header, b'{"sub": "edge-01"}', lambda data: es256_sign(signer, data))


def _check_together(client: VerifierTokenClient, token: str, callers: int) -> list[object]:
    """``callers`` threads check ``token`` at once, each arriving while the first one fetches."""
    outcomes: list[object] = []

    def check() -> None:
        try:
            outcomes.append(client.check_token(token))
        except (JoseMalformed, VerifierUnreachable) as e:
            outcomes.append(e)

    threads = [threading.Thread(target=check) for _ in range(callers)]
    for thread in threads:
        thread.start()
        time.sleep(SLOW_ANSWER_SECONDS / (2 * callers))
    for thread in threads:
        thread.join(timeout=30)
    return outcomes


def test_two_callers_meeting_a_new_kid_at_once_both_get_it_from_one_fetch(
    jwks: tuple[str, _Jwks], signer: ec.EllipticCurvePrivateKey
) -> None:
    url, published = jwks
    client = VerifierTokenClient(url, "edge-01", _NoQuotes())
    outcomes = _check_together(client, _token(signer), callers=2)
    client.close()
    assert outcomes == [{"sub": "edge-01"}, {"sub": "edge-01"}]
    assert published.fetches == 1


def test_callers_that_waited_through_a_failed_fetch_share_its_failure(
    jwks: tuple[str, _Jwks], signer: ec.EllipticCurvePrivateKey
) -> None:
    """Not "not in the JWKS" (the verifier said nothing of the kid), and not one fetch each."""
    url, published = jwks
    published.status = 503
    published.delay = 1.5  # longer than the fetch interval: the waiters are still within it
    client = VerifierTokenClient(url, "edge-01", _NoQuotes())
    outcomes = _check_together(client, _token(signer), callers=3)
    client.close()
    assert len(outcomes) == 3
    assert all(isinstance(outcome, VerifierUnreachable) for outcome in outcomes), outcomes
    assert published.fetches == 1


def test_a_verifier_that_trickles_its_jwks_is_given_up_on_within_the_timeout(
    jwks: tuple[str, _Jwks], signer: ec.EllipticCurvePrivateKey
) -> None:
    """Each byte comes well within the read timeout; the whole body never would."""
    url, published = jwks
    published.drip_seconds = 0.2  # ~40 s for the body
    client = VerifierTokenClient(url, "edge-01", _NoQuotes(), timeout=1.5)
    started = time.monotonic()
    with pytest.raises(VerifierUnreachable, match="not read within"):
        client.check_token(_token(signer))
    assert time.monotonic() - started < 4.0
    client.close()


def test_an_unknown_kid_right_after_a_fetch_is_refused_without_another(
    jwks: tuple[str, _Jwks], signer: ec.EllipticCurvePrivateKey
) -> None:
    url, published = jwks
    client = VerifierTokenClient(url, "edge-01", _NoQuotes())
    client.check_token(_token(signer))
    stranger = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(JoseMalformed, match="is not in the verifier's JWKS"):
        client.check_token(_token(stranger))
    client.close()
    assert published.fetches == 1
