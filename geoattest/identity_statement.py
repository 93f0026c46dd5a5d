"""The registrar's signed identity statement: what it vouches for about an agent, for verifiers and
auditors who must not take a plain HTTP answer on trust.

Every identity record the registrar serves carries ``identity_statement`` (RFC 8785 canonical
JSON, below) and ``identity_signature`` (ES256, raw ``r ‖ s``) by the registrar's own signing key,
which verifiers pin (``registrar_signing_key``) and auditors are given. The statement names each
binary field of the record by its SHA-256, so the record's bytes can be checked against it:

    {"type": "geoattest.identity-statement", "v": 1, "registrar_key": <RFC 7638 thumbprint>,
     "issued_at": <UTC>, "agent_id", "state", "activated_at", "ek_certificate_sha256",
     "ek_public_sha256", "ak_public_sha256", "agent_url", "tls_certificate_sha256",
     "location_key_public_sha256", "location_key_certify_sha256", "gnss_receiver_sha256"}

(absent values omitted; ``location_key_certify_sha256`` covers attest ‖ signature;
``gnss_receiver_sha256`` covers the receiver's canonical JSON, ``wire.receiver_canonical``).
A field added later is absent at its default, so a statement signed before it existed still
verifies for a record that does not carry it, and a record that carries it never verifies
against a statement that does not name it. It records
that credential activation succeeded for this EK and AK: an interactive proof that nobody can
re-run offline, so the registrar's signature is what stands for it.

Pure; of the project it imports only ``geoattest.jose`` (ES256, thumbprints).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

import rfc8785
from cryptography.hazmat.primitives.asymmetric import ec

from geoattest.jose import es256_sign, es256_valid, thumbprint

STATEMENT_TYPE = "geoattest.identity-statement"
STATEMENT_VERSION = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentityFacts:
    """The fields of an identity record a statement covers (bytes as served)."""

    agent_id: str
    state: str
    activated_at: dt.datetime | None
    ek_certificate: bytes
    ek_public: bytes
    ak_public: bytes | None
    agent_url: str | None
    tls_certificate: bytes | None
    location_key_public: bytes | None
    location_key_certify_attest: bytes | None
    location_key_certify_signature: bytes | None
    gnss_receiver: bytes | None = None  # canonical JSON (``wire.receiver_canonical``)


class StatementInvalid(ValueError):
    """A statement that does not verify, or does not describe the record it came with."""


def statement_body(facts: IdentityFacts, *, registrar_key: str, issued_at: dt.datetime) -> bytes:
    certify = None
    if facts.location_key_certify_attest is not None:
        certify = facts.location_key_certify_attest + (facts.location_key_certify_signature or b"")
    body: dict[str, str | int | None] = {
        "type": STATEMENT_TYPE,
        "v": STATEMENT_VERSION,
        "registrar_key": registrar_key,
        "issued_at": _time(issued_at),
        "agent_id": facts.agent_id,
        "state": facts.state,
        "activated_at": _time(facts.activated_at) if facts.activated_at else None,
        "ek_certificate_sha256": _digest(facts.ek_certificate),
        "ek_public_sha256": _digest(facts.ek_public),
        "ak_public_sha256": _digest(facts.ak_public),
        "agent_url": facts.agent_url,
        "tls_certificate_sha256": _digest(facts.tls_certificate),
        "location_key_public_sha256": _digest(facts.location_key_public),
        "location_key_certify_sha256": _digest(certify),
        "gnss_receiver_sha256": _digest(facts.gnss_receiver),
    }
    return rfc8785.dumps({key: value for key, value in body.items() if value is not None})


def sign_statement(body: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    return es256_sign(key, body)


def verify_statement(
    facts: IdentityFacts,
    statement: bytes | None,
    signature: bytes | None,
    key: ec.EllipticCurvePublicKey,
) -> dt.datetime:
    """Check ``signature`` over ``statement`` with the pinned registrar ``key`` and that the
    statement describes exactly ``facts``; returns its ``issued_at``. Raises ``StatementInvalid``
    naming what is wrong (missing, bad signature, another agent, a field that differs)."""
    if statement is None or signature is None:
        raise StatementInvalid("the identity record carries no registrar signature")
    if len(signature) != 64:
        raise StatementInvalid("the registrar's signature is not 64 bytes of ES256")
    if not es256_valid(key, statement, signature):
        raise StatementInvalid("the identity record is not signed by the pinned registrar")
    try:
        body = json.loads(statement)
        issued_at = dt.datetime.fromisoformat(str(body["issued_at"]).replace("Z", "+00:00"))
        registrar_key = str(body["registrar_key"])
    except (ValueError, KeyError, TypeError) as e:
        raise StatementInvalid(f"the registrar's statement does not parse: {e}") from e
    expected = statement_body(facts, registrar_key=registrar_key, issued_at=issued_at)
    if expected != statement:
        differing = sorted(
            name for name, value in json.loads(expected).items() if body.get(name) != value
        ) + sorted(name for name in body if name not in json.loads(expected))
        raise StatementInvalid(
            f"the registrar signed other facts than the record shows: {', '.join(differing)}"
        )
    return issued_at


def public_key_thumbprint(key: ec.EllipticCurvePublicKey) -> str:
    """RFC 7638 thumbprint of a P-256 key."""
    return thumbprint(key)


def _digest(value: bytes | None) -> str | None:
    return hashlib.sha256(value).hexdigest() if value is not None else None


def _time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
