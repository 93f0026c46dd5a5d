"""The residency-proof bundle's layout: file names, the manifest and the per-agent log file,
shared by the exporter and the offline verifier. JSON (RFC 8785 where it is signed or hashed)
and raw binary only; never pickle.

::

    manifest.json                  what the bundle holds: window, agents, log, every file's SHA-256
    manifest.jws                   ES256 JWS over manifest.json, by the verifier's log key
    log/checkpoint.jws             the checkpoint every inclusion proof is against
    log/window-checkpoint.jws      the first checkpoint holding every entry of the bundle
    log/consistency.json           its consistency proof to log/checkpoint.jws
    policies/<sha256>.json         the policy documents the records name (canonical bytes)
    zones/<sha256>.geojson         the zones files the records name (bytes as loaded)
    agents/<id>/records/<seq>.json evidence records, canonical bytes (verifier.core.record)
    agents/<id>/log.json           the agent's log entries with their inclusion proofs
    agents/<id>/tokens.json        tokens issued in the window
    agents/<id>/identity/…         registrar record (+ its signature when the registrar signs),
                                   EK certificate and chain, AK and location-key public areas,
                                   the location key's TPM2_Certify

Pure: no I/O.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from geoattest.errors import BundleInvalid
from verifier.core.canonical import canonical_json

BUNDLE_TYPE = "geoattest.residency-bundle"
BUNDLE_VERSION = 1
MANIFEST_TYP = "geoattest-manifest+jws"

MANIFEST = "manifest.json"
MANIFEST_SIGNATURE = "manifest.jws"
CHECKPOINT = "log/checkpoint.jws"
WINDOW_CHECKPOINT = "log/window-checkpoint.jws"
CONSISTENCY = "log/consistency.json"

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def policy_path(sha256: bytes) -> str:
    return f"policies/{sha256.hex()}.json"


def zones_path(sha256: bytes) -> str:
    return f"zones/{sha256.hex()}.geojson"


def agent_dir(agent_id: str) -> str:
    return f"agents/{agent_id}"


def record_path(agent_id: str, seq: int) -> str:
    return f"{agent_dir(agent_id)}/records/{seq:010d}.json"


def log_path(agent_id: str) -> str:
    return f"{agent_dir(agent_id)}/log.json"


def tokens_path(agent_id: str) -> str:
    return f"{agent_dir(agent_id)}/tokens.json"


class Identity:
    """File names under ``agents/<id>/identity/``."""

    REGISTRAR_RECORD = "registrar-record.json"  # the registrar's answer, as fetched
    EK_CERTIFICATE = "ek-certificate.der"
    EK_CHAIN = "ek-chain"  # <n>.der: issuers up to an anchor, as the exporter found them
    LOCATION_KEY = "location-key.tpm2b_public"
    CERTIFY_ATTEST = "location-key.certify.tpms_attest"
    CERTIFY_SIGNATURE = "location-key.certify.tpmt_signature"


def identity_path(agent_id: str, name: str) -> str:
    return f"{agent_dir(agent_id)}/identity/{name}"


def ak_path(agent_id: str, name: bytes) -> str:
    return identity_path(agent_id, f"ak-{name.hex()}.tpm2b_public")


def time_text(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime(_TIME_FORMAT)


def parse_time(value: object, where: str) -> dt.datetime:
    try:
        return dt.datetime.strptime(str(value), _TIME_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError as e:
        raise BundleInvalid(f"not a time: {value!r}", file=where, check="format") from e


@dataclass(frozen=True, slots=True, kw_only=True)
class FileDigest:
    path: str
    sha256: bytes
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentEntry:
    agent_id: str
    policy: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    created_at: dt.datetime
    verifier_id: str
    window_from: dt.datetime
    window_to: dt.datetime
    log_origin: str
    log_size: int
    default_max_age: dt.timedelta  # the lease when a policy does not set one
    agents: tuple[AgentEntry, ...]
    files: tuple[FileDigest, ...]
    zones_repair: bool = False
    at: dt.datetime | None = None


def encode_manifest(manifest: Manifest) -> bytes:
    body: dict[str, Any] = {
        "type": BUNDLE_TYPE,
        "v": BUNDLE_VERSION,
        "created_at": time_text(manifest.created_at),
        "verifier_id": manifest.verifier_id,
        "window": {"from": time_text(manifest.window_from), "to": time_text(manifest.window_to)},
        "log": {"origin": manifest.log_origin, "size": manifest.log_size},
        "lease": {"default_max_age_ms": round(manifest.default_max_age.total_seconds() * 1000)},
        "zones_repair": manifest.zones_repair,
        "agents": [{"agent_id": a.agent_id, "policy": a.policy} for a in manifest.agents],
        "files": [
            {"path": f.path, "sha256": f.sha256.hex(), "size": f.size}
            for f in sorted(manifest.files, key=lambda f: f.path)
        ],
    }
    if manifest.at is not None:
        body["at"] = time_text(manifest.at)
    return canonical_json(body)


def decode_manifest(data: bytes) -> Manifest:
    """Parse manifest.json; ``BundleInvalid`` (file ``manifest.json``) for anything else."""
    try:
        body = json.loads(data)
        if body.get("type") != BUNDLE_TYPE or body.get("v") != BUNDLE_VERSION:
            raise ValueError("not a geoattest residency bundle of version 1")
        manifest = Manifest(
            created_at=parse_time(body["created_at"], MANIFEST),
            verifier_id=str(body["verifier_id"]),
            window_from=parse_time(body["window"]["from"], MANIFEST),
            window_to=parse_time(body["window"]["to"], MANIFEST),
            log_origin=str(body["log"]["origin"]),
            log_size=int(body["log"]["size"]),
            default_max_age=dt.timedelta(milliseconds=int(body["lease"]["default_max_age_ms"])),
            agents=tuple(
                AgentEntry(agent_id=str(a["agent_id"]), policy=str(a["policy"]))
                for a in body["agents"]
            ),
            files=tuple(
                FileDigest(
                    path=str(f["path"]), sha256=bytes.fromhex(f["sha256"]), size=int(f["size"])
                )
                for f in body["files"]
            ),
            zones_repair=bool(body.get("zones_repair", False)),
            at=parse_time(body["at"], MANIFEST) if "at" in body else None,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise BundleInvalid(f"does not parse: {e}", file=MANIFEST, check="format") from e
    if encode_manifest(manifest) != data:
        raise BundleInvalid("is not in canonical form", file=MANIFEST, check="format")
    return manifest


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggedEntry:
    index: int
    entry: bytes  # canonical entry bytes (verifier.core.log_entry)
    path: tuple[bytes, ...]  # inclusion proof against log/checkpoint.jws


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentLog:
    agent_id: str
    checkpoint_size: int
    entries: tuple[LoggedEntry, ...] = field(default_factory=tuple)


def encode_agent_log(log: AgentLog) -> bytes:
    return _json(
        {
            "agent_id": log.agent_id,
            "checkpoint_size": log.checkpoint_size,
            "entries": [
                {
                    "index": e.index,
                    "entry": base64.b64encode(e.entry).decode("ascii"),
                    "path": [node.hex() for node in e.path],
                }
                for e in log.entries
            ],
        }
    )


def decode_agent_log(data: bytes, where: str) -> AgentLog:
    try:
        body = json.loads(data)
        return AgentLog(
            agent_id=str(body["agent_id"]),
            checkpoint_size=int(body["checkpoint_size"]),
            entries=tuple(
                LoggedEntry(
                    index=int(e["index"]),
                    entry=base64.b64decode(e["entry"], validate=True),
                    path=tuple(bytes.fromhex(node) for node in e["path"]),
                )
                for e in body["entries"]
            ),
        )
    except (ValueError, KeyError, TypeError) as e:
        raise BundleInvalid(f"does not parse: {e}", file=where, check="format") from e


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedToken:
    """A PoR/PoG token issued in the window, as the token service stored it."""

    jti: str
    agent_id: str
    token_type: str
    audience: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    token: str  # the compact JWS as issued
    record_seq: int | None = None
    workload: str | None = None
    revoked_at: dt.datetime | None = None


def encode_tokens(tokens: Sequence[IssuedToken]) -> bytes:
    return _json(
        {
            "tokens": [
                {
                    "jti": t.jti,
                    "agent_id": t.agent_id,
                    "token_type": t.token_type,
                    "audience": t.audience,
                    "issued_at": time_text(t.issued_at),
                    "expires_at": time_text(t.expires_at),
                    "record_seq": t.record_seq,
                    "workload": t.workload,
                    "revoked_at": time_text(t.revoked_at) if t.revoked_at else None,
                    "token": t.token,
                }
                for t in tokens
            ]
        }
    )


def decode_tokens(data: bytes, where: str) -> list[IssuedToken]:
    try:
        return [
            IssuedToken(
                jti=str(t["jti"]),
                agent_id=str(t["agent_id"]),
                token_type=str(t["token_type"]),
                audience=str(t["audience"]),
                issued_at=parse_time(t["issued_at"], where),
                expires_at=parse_time(t["expires_at"], where),
                token=str(t["token"]),
                record_seq=int(t["record_seq"]) if t.get("record_seq") is not None else None,
                workload=str(t["workload"]) if t.get("workload") is not None else None,
                revoked_at=parse_time(t["revoked_at"], where) if t.get("revoked_at") else None,
            )
            for t in json.loads(data)["tokens"]
        ]
    except (ValueError, KeyError, TypeError) as e:
        raise BundleInvalid(f"does not parse: {e}", file=where, check="format") from e


def encode_consistency(old: int, new: int, path: Sequence[bytes]) -> bytes:
    return _json({"from": old, "to": new, "path": [node.hex() for node in path]})


def decode_consistency(data: bytes) -> tuple[int, int, list[bytes]]:
    try:
        body: Mapping[str, Any] = json.loads(data)
        return int(body["from"]), int(body["to"]), [bytes.fromhex(n) for n in body["path"]]
    except (ValueError, KeyError, TypeError) as e:
        raise BundleInvalid(f"does not parse: {e}", file=CONSISTENCY, check="format") from e


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
