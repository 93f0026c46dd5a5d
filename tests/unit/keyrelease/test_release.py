"""``Releaser``: a model key is released, wrapped to the caller's key, only to a valid PoG token
for the key's zones (and workloads), proven by the token's cnf key; one attack per test."""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from geoattest.errors import ConfigurationError, KeyReleaseRefused
from geoattest.jose import b64url_decode, decrypt_ecdh_es, thumbprint
from keyrelease.keystore import KeyStore, ModelKey
from keyrelease.release import Releaser, make_proof
from tests.unit.verifier.tokens.issuing import (
    WORKLOAD,
    Passed,
    Signer,
    claims_for,
    issue,
    passed_round,
)
from verifier.tokens.claims import TokenClaims
from verifier.tokens.verify import TrustedKeys
from verifier.tokens.vocabulary import TokenType, WorkloadMeasure

AUDIENCE = "model-keys"  # what tests.unit.verifier.tokens.issuing issues for


@dataclass
class StaticTrust:
    """The verifier's JWKS and status as a relying party holds them."""

    keys: TrustedKeys
    revoked_jtis: frozenset[str] = field(default_factory=frozenset)

    def keys_for(self, token: str) -> TrustedKeys:
        return self.keys

    def revoked(self) -> frozenset[str]:
        return self.revoked_jtis


@pytest.fixture(scope="module")
def pog() -> Passed:
    return passed_round(geo=True)


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer.new()


@pytest.fixture
def key(tmp_path: Path) -> ModelKey:
    return KeyStore(tmp_path / "keys").create(
        "llm-7b", zones=frozenset({"USA"}), now=dt.datetime.now(dt.UTC)
    )


@dataclass
class Caller:
    cnf: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    wrap: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    @property
    def jkt(self) -> str:
        return thumbprint(self.cnf.public_key())


def _releaser(signer: Signer, claims: TokenClaims, **trust: object) -> Releaser:
    clock = claims.issued_at.timestamp() + 1
    return Releaser(
        audience=AUDIENCE,
        trust=StaticTrust(signer.trusted(), **trust),  # type: ignore[arg-type]
        clock=lambda: clock,
    )


def _reason(releaser: Releaser, key: ModelKey, token: str, proof: str) -> str:
    with pytest.raises(KeyReleaseRefused) as refused:
        releaser.release(key, token, proof)
    return refused.value.reason


def _setup(pog: Passed, signer: Signer, **claims: object) -> tuple[Caller, TokenClaims, str, str]:
    caller = Caller()
    made = claims_for(pog, cnf_jkt=caller.jkt, **claims)  # type: ignore[arg-type]
    token = issue(signer, made)
    proof = make_proof(
        caller.cnf,
        token=token,
        key_id="llm-7b",
        wrap=caller.wrap.public_key(),
        now=made.issued_at.timestamp() + 1,
    )
    return caller, made, token, proof


def test_the_key_is_released_wrapped_to_the_callers_key(
    pog: Passed, signer: Signer, key: ModelKey
) -> None:
    caller, claims, token, proof = _setup(pog, signer)
    done = _releaser(signer, claims).release(key, token, proof)
    plain = json.loads(decrypt_ecdh_es(done.wrapped, caller.wrap))
    assert b64url_decode(plain["k"]) == key.key
    assert plain["kid"] == "llm-7b"
    assert key.key not in done.wrapped.encode()
    with pytest.raises(Exception, match="decrypt"):
        decrypt_ecdh_es(done.wrapped, caller.cnf)  # only the wrapping key opens it
    assert done.token.agent_id == "edge-1"


def test_a_token_for_another_zone_is_refused(pog: Passed, signer: Signer, tmp_path: Path) -> None:
    germany = KeyStore(tmp_path / "de").create(
        "llm-7b", zones=frozenset({"DEU"}), now=dt.datetime.now(dt.UTC)
    )
    _, claims, token, proof = _setup(pog, signer)
    assert _reason(_releaser(signer, claims), germany, token, proof) == "token_wrong_zone"


def test_a_token_of_another_workload_is_refused(pog: Passed, signer: Signer, key: ModelKey) -> None:
    only = replace(key, workloads=frozenset({os.urandom(32)}))
    _, claims, token, proof = _setup(pog, signer)
    assert _reason(_releaser(signer, claims), only, token, proof) == "token_wrong_workload"
    mine = replace(key, workloads=frozenset({WORKLOAD}))
    assert _releaser(signer, claims).release(mine, token, proof).wrapped


def test_a_revoked_token_is_refused(pog: Passed, signer: Signer, key: ModelKey) -> None:
    _, claims, token, proof = _setup(pog, signer)
    releaser = _releaser(signer, claims, revoked_jtis=frozenset({claims.jti}))
    assert _reason(releaser, key, token, proof) == "token_revoked"


def test_a_por_token_is_refused(signer: Signer, key: ModelKey) -> None:
    _, claims, token, proof = _setup(passed_round(geo=False), signer, token_type=TokenType.POR)
    assert _reason(_releaser(signer, claims), key, token, proof) == "token_not_pog"


def test_a_weaker_workload_tier_is_refused(pog: Passed, signer: Signer, key: ModelKey) -> None:
    _, claims, token, proof = _setup(pog, signer, measured_by=WorkloadMeasure.AGENT)
    assert _reason(_releaser(signer, claims), key, token, proof) == "token_weak_tier"


def test_a_token_bound_to_another_key_is_refused(
    pog: Passed, signer: Signer, key: ModelKey
) -> None:
    _, claims, token, _ = _setup(pog, signer)
    thief = Caller()  # holds the token, not its cnf key
    proof = make_proof(
        thief.cnf, token=token, key_id="llm-7b", wrap=thief.wrap.public_key(),
        now=claims.issued_at.timestamp() + 1,
    )  # fmt: skip
    assert _reason(_releaser(signer, claims), key, token, proof) == "token_wrong_key"


def test_a_token_without_cnf_is_refused(pog: Passed, signer: Signer, key: ModelKey) -> None:
    caller = Caller()
    claims = claims_for(pog)
    token = issue(signer, claims)
    proof = make_proof(
        caller.cnf, token=token, key_id="llm-7b", wrap=caller.wrap.public_key(),
        now=claims.issued_at.timestamp() + 1,
    )  # fmt: skip
    assert _reason(_releaser(signer, claims), key, token, proof) == "token_wrong_key"


def test_a_replayed_proof_is_refused(pog: Passed, signer: Signer, key: ModelKey) -> None:
    _, claims, token, proof = _setup(pog, signer)
    releaser = _releaser(signer, claims)
    releaser.release(key, token, proof)
    assert _reason(releaser, key, token, proof) == "pop_replayed"


@pytest.mark.parametrize("attack", ["stale", "other_key_id", "other_token", "same_keys", "forged"])
def test_a_proof_not_for_this_request_is_refused(
    pog: Passed, signer: Signer, key: ModelKey, attack: str
) -> None:
    caller, claims, token, _ = _setup(pog, signer)
    now = claims.issued_at.timestamp() + 1
    arguments: dict[str, object] = {
        "token": token, "key_id": "llm-7b", "wrap": caller.wrap.public_key(), "now": now,
    }  # fmt: skip
    if attack == "stale":
        arguments["now"] = now - 120
    elif attack == "other_key_id":
        arguments["key_id"] = "another-model"
    elif attack == "other_token":
        arguments["token"] = issue(signer, claims_for(pog, cnf_jkt=caller.jkt))
    elif attack == "same_keys":
        arguments["wrap"] = caller.cnf.public_key()
    proof = make_proof(caller.cnf, **arguments)  # type: ignore[arg-type]
    if attack == "forged":
        head, body, _ = proof.split(".")
        proof = f"{head}.{body}." + "A" * 86
    assert _reason(_releaser(signer, claims), key, token, proof) == "pop_invalid"


def test_model_keys_are_owner_only_and_never_shown(tmp_path: Path, key: ModelKey) -> None:
    store = KeyStore(tmp_path / "keys")
    path = tmp_path / "keys" / "llm-7b.json"
    assert path.stat().st_mode & 0o077 == 0
    assert key.key.hex() not in repr(key)
    assert store.get("llm-7b").key == key.key
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod"):
        store.get("llm-7b")
