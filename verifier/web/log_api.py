"""The transparency log's API under ``/v1/log``: checkpoints, proofs, entries, the log keys.

Everything here can be checked by whoever reads it: checkpoints are JWS signed by a log key
(``/v1/log/keys`` publishes them, retired ones included), proofs verify against a checkpoint's
root (RFC 9162), entries hash to the leaves the proofs name. Hashes are lowercase hex.
Checkpoints, proofs and keys are public (hashes and public keys only); entries name agents and
need a ``viewer`` API key. ``POST /v1/log/audit`` lets the relying party's key service record
releases and refusals (an ``admin`` API key, as for every change).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Annotated, Literal

from flask import Blueprint, Response, current_app, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from geoattest.access.guard import public, requires
from geoattest.access.keys import Role
from geoattest.errors import MalformedRequest
from geoattest.http import parse_body
from geoattest.openapi import documented
from geoattest.wire import AgentId
from verifier.core.checkpoint import decode_checkpoint
from verifier.core.jws import peek_header, unb64url
from verifier.core.log_entry import AuditAction, AuditEntry
from verifier.signing.keyring import Keyring
from verifier.storage.log import StoredEntry, TransparencyLog

log_blueprint = Blueprint("verifier_log", __name__, url_prefix="/v1/log")

MAX_ENTRIES = 1000
MAX_INDEX = 2**62


class AuditRequest(BaseModel):
    """A key service's record of a key released to, or refused to, a workload."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: Literal["key_released", "key_refused"]
    actor: Annotated[str, Field(min_length=1, max_length=128)]
    subject: Annotated[str, Field(min_length=1, max_length=128)]  # the key id
    agent_id: AgentId | None = None
    details: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=300)]] = (
        Field(default_factory=dict, max_length=16)
    )


def _log() -> TransparencyLog:
    found: TransparencyLog = current_app.extensions["geoattest.log"]
    return found


def _keys() -> Keyring:
    found: Keyring = current_app.extensions["geoattest.log_keys"]
    return found


@log_blueprint.get("/checkpoint")
@public
@documented("The newest signed checkpoint of the transparency log")
def latest_checkpoint() -> Response:
    """The newest signed checkpoint."""
    return jsonify(_checkpoint_view(_log().latest_checkpoint()))


@log_blueprint.get("/checkpoints/<int:size>")
@public
@documented(
    "The first checkpoint signed at a tree size",
    path={"size": {"type": "integer", "minimum": 0, "maximum": MAX_INDEX}},
)
def checkpoint_of_size(size: int) -> Response:
    """The first checkpoint signed at tree size ``size`` (to check consistency against)."""
    if size > MAX_INDEX:
        raise MalformedRequest(f"size must be at most {MAX_INDEX}")
    return jsonify(_checkpoint_view(_log().checkpoint_of_size(size)))


@log_blueprint.get("/proof/inclusion")
@public
@documented("An RFC 9162 inclusion proof (index or leaf_hash, and size)")
def inclusion_proof() -> Response:
    """``?index=I&size=N`` or ``?leaf_hash=HEX&size=N``: the audit path of a leaf."""
    size = _int_arg("size")
    leaf = request.args.get("leaf_hash")
    if leaf is not None:
        index = _log().leaf_index(_hex_arg("leaf_hash", leaf))
    else:
        index = _int_arg("index")
    if index >= size:
        raise MalformedRequest(f"leaf {index} is not in a tree of {size}")
    path = _log().inclusion_proof(index, size)
    entry = _log().entries(index, index + 1)[0]
    return jsonify(
        {
            "index": index,
            "size": size,
            "leaf_hash": entry.leaf_hash.hex(),
            "path": [node.hex() for node in path],
        }
    )


@log_blueprint.get("/proof/consistency")
@public
@documented("An RFC 9162 consistency proof between two tree sizes (from, to)")
def consistency_proof() -> Response:
    """``?from=M&to=N`` (0 < M <= N): the tree of M leaves is a prefix of the tree of N."""
    old, new = _int_arg("from"), _int_arg("to")
    if not 0 < old <= new:
        raise MalformedRequest("consistency needs 0 < from <= to")
    path = _log().consistency_proof(old, new)
    return jsonify({"from": old, "to": new, "path": [node.hex() for node in path]})


@log_blueprint.get("/entries")
@requires(Role.VIEWER)
@documented("Log entries by index (start, end; at most 1000)")
def entries() -> Response:
    """``?start=S&end=E`` (at most 1000): the entries' canonical bytes (base64 ``entry``, what
    the leaf hash covers) and the same entry parsed, for reading."""
    start = _int_arg("start")
    end = _int_arg("end", default=start + 100)
    if not start <= end <= start + MAX_ENTRIES:
        raise MalformedRequest(f"end must be in start..start+{MAX_ENTRIES}")
    return jsonify({"entries": [_entry_view(e) for e in _log().entries(start, end)]})


@log_blueprint.get("/keys")
@public
@documented("The log keys (JWKS): active, next and every retired one")
def keys() -> Response:
    """The log's public keys (JWKS): active, next and every retired one."""
    return jsonify(_keys().jwks(dt.datetime.now(dt.UTC)))


@log_blueprint.post("/audit")
@requires(Role.ADMIN)
@documented("A key service's record of a release or refusal", body=AuditRequest, status=202)
def append_audit() -> tuple[Response, int]:
    body = parse_body(AuditRequest)
    entry = AuditEntry(
        action=AuditAction(body.action),
        at=dt.datetime.now(dt.UTC),
        actor=body.actor,
        subject=body.subject,
        agent_id=body.agent_id,
        details=dict(body.details),
    )
    _log().append([entry], entry.at)
    return jsonify({"queued": True}), 202


def _checkpoint_view(jws: str) -> dict[str, object]:
    body = decode_checkpoint(unb64url(jws.split(".")[1], "payload"))
    return {
        "checkpoint": jws,
        "origin": body.origin,
        "size": body.size,
        "root": body.root.hex(),
        "time": body.time.isoformat().replace("+00:00", "Z"),
        "kid": peek_header(jws).get("kid"),
    }


def _entry_view(entry: StoredEntry) -> dict[str, object]:
    return {
        "index": entry.index,
        "kind": entry.kind,
        "agent_id": entry.agent_id,
        "leaf_hash": entry.leaf_hash.hex(),
        "entry": base64.b64encode(entry.entry).decode("ascii"),
        "parsed": json.loads(entry.entry),
    }


def _int_arg(name: str, default: int | None = None) -> int:
    raw = request.args.get(name)
    if raw is None:
        if default is None:
            raise MalformedRequest(f"{name} is required")
        return default
    if not raw.isdigit() or int(raw) > MAX_INDEX:
        raise MalformedRequest(f"{name} must be an integer in 0..{MAX_INDEX}")
    return int(raw)


def _hex_arg(name: str, raw: str) -> bytes:
    try:
        value = bytes.fromhex(raw)
    except ValueError as e:
        raise MalformedRequest(f"{name} must be 64 hex digits") from e
    if len(value) != 32:
        raise MalformedRequest(f"{name} must be 64 hex digits")
    return value
