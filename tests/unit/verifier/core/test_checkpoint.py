"""Signed checkpoints: the C2SP body byte for byte, the JWS around it, and what is refused."""

from __future__ import annotations

import base64
import datetime as dt

import pytest

from geoattest.errors import SignatureInvalid
from tests.support.software_pki import JwsKey
from verifier.core.checkpoint import (
    Checkpoint,
    decode_checkpoint,
    encode_checkpoint,
    sign_checkpoint,
    verify_checkpoint,
)
from verifier.core.jws import b64url, sign_compact, unb64url
from verifier.core.merkle import leaf_hash

AT = dt.datetime(2026, 12, 1, 10, 0, 5, tzinfo=dt.UTC)
ROOT = leaf_hash(b"root")


def _checkpoint(size: int = 20852163) -> Checkpoint:
    return Checkpoint(origin="geoattest/log/0123abcd", size=size, root=ROOT, time=AT)


def test_the_body_is_a_c2sp_checkpoint_with_a_time_extension_line() -> None:
    body = encode_checkpoint(_checkpoint())
    root = base64.b64encode(ROOT).decode()
    assert body == f"geoattest/log/0123abcd\n20852163\n{root}\ntime 2026-12-01T10:00:05Z\n".encode()
    assert decode_checkpoint(body) == _checkpoint()


@pytest.mark.parametrize(
    "body",
    [
        b"origin\n012\nAAAA\ntime 2026-12-01T10:00:05Z\n",  # leading zero, short root
        b"origin\n12\n" + base64.b64encode(ROOT) + b"\n",  # no time line
        b"origin with space\n1\n" + base64.b64encode(ROOT) + b"\ntime 2026-12-01T10:00:05Z\n",
        b"o\n1\n" + base64.b64encode(ROOT) + b"\ntime 2026-12-01T10:00:05Z",  # no final newline
        b"o\n-1\n" + base64.b64encode(ROOT) + b"\ntime 2026-12-01T10:00:05Z\n",
    ],
)
def test_bodies_not_in_canonical_form_are_refused(body: bytes) -> None:
    with pytest.raises(SignatureInvalid, match="does not parse"):
        decode_checkpoint(body)


def test_a_signed_checkpoint_verifies_with_the_log_key() -> None:
    key = JwsKey()
    signed = sign_checkpoint(_checkpoint(), key)
    again = verify_checkpoint(signed.jws, key.keys, origin="geoattest/log/0123abcd")
    assert again.checkpoint == _checkpoint()
    assert again.kid == key.kid


def test_a_checkpoint_signed_by_another_key_is_refused() -> None:
    key, other = JwsKey(), JwsKey()
    with pytest.raises(SignatureInvalid, match="not one of the given keys"):
        verify_checkpoint(sign_checkpoint(_checkpoint(), other).jws, key.keys)


def test_a_checkpoint_of_another_log_is_refused() -> None:
    key = JwsKey()
    signed = sign_checkpoint(_checkpoint(), key)
    with pytest.raises(SignatureInvalid, match="of log"):
        verify_checkpoint(signed.jws, key.keys, origin="geoattest/log/other")


def test_a_manifest_signature_cannot_pass_as_a_checkpoint() -> None:
    key = JwsKey()
    token = sign_compact(encode_checkpoint(_checkpoint()), typ="geoattest-manifest+jws", signer=key)
    with pytest.raises(SignatureInvalid, match="typ"):
        verify_checkpoint(token, key.keys)


def test_a_grown_size_under_the_old_signature_is_refused() -> None:
    key = JwsKey()
    header, payload, signature = sign_checkpoint(_checkpoint(5), key).jws.split(".")
    body = unb64url(payload, "payload").replace(b"\n5\n", b"\n6\n")
    with pytest.raises(SignatureInvalid, match="does not verify"):
        verify_checkpoint(f"{header}.{b64url(body)}.{signature}", key.keys)
