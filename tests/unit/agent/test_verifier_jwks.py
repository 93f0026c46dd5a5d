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
from geoattest.errors import JoseMalformed
from geoattest.jose import encode_jws, es256_sign, public_jwk, thumbprint
from geoattest.pcr_banks import PcrBank

SLOW_ANSWER_SECONDS = 0.5


class _Jwks:
    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self.body = json.dumps(
            {"keys": [{**public_jwk(key.public_key()), "kid": thumbprint(key.public_key())}]}
        ).encode()
        self.fetches = 0


@pytest.fixture
def signer() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def jwks(signer: ec.EllipticCurvePrivateKey) -> Iterator[tuple[str, _Jwks]]:
    published = _Jwks(signer)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's naming
            published.fetches += 1
            time.sleep(SLOW_ANSWER_SECONDS)  # long enough for the second caller to arrive
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(published.body)))
            self.end_headers()
            self.wfile.write(published.body)

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


def test_two_callers_meeting_a_new_kid_at_once_both_get_it_from_one_fetch(
    jwks: tuple[str, _Jwks], signer: ec.EllipticCurvePrivateKey
) -> None:
    url, published = jwks
    client = VerifierTokenClient(url, "edge-01", _NoQuotes())
    token = _token(signer)
    outcomes: list[object] = []

    def check() -> None:
        try:
            outcomes.append(client.check_token(token))
        except JoseMalformed as e:
            outcomes.append(e)

    callers = [threading.Thread(target=check) for _ in range(2)]
    for caller in callers:
        caller.start()
        time.sleep(SLOW_ANSWER_SECONDS / 5)  # the second arrives while the first one's fetch runs
    for caller in callers:
        caller.join(timeout=10)
    client.close()
    assert outcomes == [{"sub": "edge-01"}, {"sub": "edge-01"}]
    assert published.fetches == 1


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
