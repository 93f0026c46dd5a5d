"""Signed checkpoints of the transparency log: a C2SP ``tlog-checkpoint`` body, signed as a JWS.

The body is the C2SP checkpoint text, byte for byte, with one extension line for the time
(ADR 10 says why JWS and not a signed note)::

    <origin>\\n
    <tree size, decimal>\\n
    <root hash, standard base64>\\n
    time <YYYY-MM-DDTHH:MM:SSZ>\\n

and the JWS (ES256, ``typ`` ``CHECKPOINT_TYP``, the log key's RFC 7638 ``kid``) carries it as
its payload, so any JOSE library and the log's published JWKS verify it, and C2SP tooling
parses the payload (extension lines are opaque to it). ``decode_checkpoint`` accepts only that
exact form (it re-encodes and compares). Pure: no I/O, no clock.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from geoattest.errors import SignatureInvalid
from verifier.core.jws import Signer, sign_compact, verify_compact
from verifier.core.merkle import HASH_SIZE

CHECKPOINT_TYP = "geoattest-checkpoint+jws"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
MAX_ORIGIN = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    origin: str  # names the log (one per verifier database)
    size: int
    root: bytes
    time: dt.datetime  # when it was signed (whole seconds, UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    kid: str
    jws: str


def check_origin(origin: str) -> str:
    """An origin is 1..200 printable ASCII characters without spaces or ``+`` (C2SP key names)."""
    if not 0 < len(origin) <= MAX_ORIGIN or not origin.isascii() or not origin.isprintable():
        raise ValueError(f"log origin must be 1-{MAX_ORIGIN} printable ASCII characters")
    if " " in origin or "+" in origin:
        raise ValueError("log origin may hold neither spaces nor '+'")
    return origin


def encode_checkpoint(checkpoint: Checkpoint) -> bytes:
    if len(checkpoint.root) != HASH_SIZE or checkpoint.size < 0:
        raise ValueError("a checkpoint holds a 32-byte root and a size >= 0")
    stamp = checkpoint.time.astimezone(dt.UTC).strftime(_TIME_FORMAT)
    root = base64.b64encode(checkpoint.root).decode("ascii")
    text = f"{check_origin(checkpoint.origin)}\n{checkpoint.size}\n{root}\ntime {stamp}\n"
    return text.encode("ascii")


def decode_checkpoint(body: bytes) -> Checkpoint:
    """Parse a checkpoint body; ``SignatureInvalid`` for anything but the canonical form."""
    try:
        lines = body.decode("ascii").split("\n")
        if len(lines) != 5 or lines[-1] != "" or not lines[3].startswith("time "):
            raise ValueError("not four lines: origin, size, root, time")
        checkpoint = Checkpoint(
            origin=check_origin(lines[0]),
            size=int(lines[1]),
            root=base64.b64decode(lines[2], validate=True),
            time=dt.datetime.strptime(lines[3][5:], _TIME_FORMAT).replace(tzinfo=dt.UTC),
        )
        if encode_checkpoint(checkpoint) != body:
            raise ValueError("not in canonical form")
    except (UnicodeDecodeError, ValueError, binascii.Error) as e:
        raise SignatureInvalid(f"checkpoint body does not parse: {e}") from e
    return checkpoint


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer) -> SignedCheckpoint:
    jws = sign_compact(encode_checkpoint(checkpoint), typ=CHECKPOINT_TYP, signer=signer)
    return SignedCheckpoint(checkpoint=checkpoint, kid=signer.kid, jws=jws)


def verify_checkpoint(
    jws: str,
    keys: Mapping[str, ec.EllipticCurvePublicKey],
    *,
    origin: str | None = None,
) -> SignedCheckpoint:
    """Verify a signed checkpoint with one of ``keys`` (by kid) and parse it; ``origin``, when
    given, must be the log's. Raises ``SignatureInvalid``."""
    verified = verify_compact(jws, typ=CHECKPOINT_TYP, keys=keys)
    checkpoint = decode_checkpoint(verified.payload)
    if origin is not None and checkpoint.origin != origin:
        raise SignatureInvalid(f"checkpoint is of log {checkpoint.origin!r}, not of {origin!r}")
    return SignedCheckpoint(checkpoint=checkpoint, kid=verified.kid, jws=jws.strip())
