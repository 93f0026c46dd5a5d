"""``TrustedKeys.from_jwks``: a relying party's keys from the verifier's JWKS. A document that
is ambiguous about which key a ``kid`` names is refused, not resolved by taking one of them."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from geoattest.errors import JoseMalformed
from geoattest.jose import public_jwk
from verifier.tokens.trusted_keys import TrustedKeys


def _jwk(kid: str, **extra: str) -> dict[str, str]:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return {**public_jwk(key), "kid": kid, "alg": "ES256", **extra}


def test_every_es256_signing_key_is_kept_by_kid() -> None:
    first, second = _jwk("a"), _jwk("b")
    keys = TrustedKeys.from_jwks(json.dumps({"keys": [first, second]}).encode())
    assert set(keys.keys) == {"a", "b"}
    assert public_jwk(keys.keys["a"]) == public_jwk(
        TrustedKeys.from_jwks({"keys": [first]}).keys["a"]
    )


def test_a_kid_given_twice_is_refused() -> None:
    # Two keys under one kid: a verifier of ours would check a token against whichever won.
    with pytest.raises(JoseMalformed, match="appears twice"):
        TrustedKeys.from_jwks({"keys": [_jwk("same"), _jwk("same")]})


def test_a_key_without_kid_is_refused() -> None:
    key = _jwk("x")
    del key["kid"]
    with pytest.raises(JoseMalformed, match="no kid"):
        TrustedKeys.from_jwks({"keys": [key]})


@pytest.mark.parametrize(
    "document", [{"keys": "not a list"}, {}, {"keys": ["not an object"]}], ids=str
)
def test_a_document_that_is_not_a_jwks_is_refused(document: dict[str, object]) -> None:
    with pytest.raises(JoseMalformed):
        TrustedKeys.from_jwks(document)


def test_keys_for_another_algorithm_or_use_are_left_out() -> None:
    keys = TrustedKeys.from_jwks(
        {"keys": [_jwk("enc", use="enc"), _jwk("es384", alg="ES384"), _jwk("ok")]}
    )
    assert set(keys.keys) == {"ok"}
