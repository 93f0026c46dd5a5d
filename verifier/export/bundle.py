"""Building a residency-proof bundle: the files of ``verifier.export.layout``, their manifest
and its signature by the log key.

The caller sequences the log and signs a checkpoint first (``sign_checkpoint``), so every entry
of the window made so far is under ``log/checkpoint.jws``; entries sequenced after it, and
folds from before the log existed, travel without a proof and are listed by ``verify-bundle``
as not vouched for by the log.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from geoattest.errors import NotFound
from verifier.core.checkpoint import decode_checkpoint
from verifier.core.jws import Signer, sign_compact, unb64url
from verifier.core.log_entry import encode_entry
from verifier.export import layout
from verifier.export.collect import AgentMaterial, BundleSources
from verifier.export.layout import (
    AgentEntry,
    AgentLog,
    FileDigest,
    Identity,
    LoggedEntry,
    Manifest,
)
from verifier.storage.documents import DocumentKind
from verifier.storage.log import TransparencyLog

log = logging.getLogger(__name__)

Progress = Callable[[str], None]  # called once per step, with what was just done
STEPS_PER_AGENT = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportRequest:
    agents: Sequence[str]
    start: dt.datetime
    end: dt.datetime
    at: dt.datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportContext:
    verifier_id: str
    default_max_age: dt.timedelta
    zones_repair: bool
    now: dt.datetime


def build_bundle(
    request: ExportRequest,
    *,
    sources: BundleSources,
    log_store: TransparencyLog,
    signer: Signer,
    context: ExportContext,
    progress: Progress = lambda _done: None,
) -> dict[str, bytes]:
    """The bundle's files by path, ``manifest.json`` and ``manifest.jws`` included."""
    checkpoint = log_store.latest_checkpoint()
    size = decode_checkpoint(unb64url(checkpoint.split(".")[1], "payload")).size
    files: dict[str, bytes] = {layout.CHECKPOINT: checkpoint.encode()}
    policies: set[bytes] = set()
    zones: set[bytes] = set()
    agents: list[AgentEntry] = []
    highest = -1
    for agent_id in request.agents:
        material = sources.material(agent_id, request.start, request.end)
        progress(f"{agent_id}: {len(material.records)} records read")
        highest = max(highest, _agent_files(files, material, log_store, size))
        progress(f"{agent_id}: {len(material.entries)} log entries proven")
        policies |= material.policy_digests
        zones |= material.zones_digests
        agents.append(AgentEntry(agent_id=agent_id, policy=material.policy_name))
    _documents(files, sources, policies, zones)
    _window_checkpoint(files, log_store, highest, size)
    manifest = Manifest(
        created_at=context.now,
        verifier_id=context.verifier_id,
        window_from=request.start,
        window_to=request.end,
        log_origin=decode_checkpoint(unb64url(checkpoint.split(".")[1], "payload")).origin,
        log_size=size,
        default_max_age=context.default_max_age,
        agents=tuple(agents),
        files=tuple(
            FileDigest(path=path, sha256=hashlib.sha256(data).digest(), size=len(data))
            for path, data in files.items()
        ),
        zones_repair=context.zones_repair,
        at=request.at,
    )
    encoded = layout.encode_manifest(manifest)
    files[layout.MANIFEST] = encoded
    files[layout.MANIFEST_SIGNATURE] = sign_compact(
        encoded, typ=layout.MANIFEST_TYP, signer=signer
    ).encode()
    return files


def _agent_files(
    files: dict[str, bytes], material: AgentMaterial, log_store: TransparencyLog, size: int
) -> int:
    """Write one agent's files; returns the highest log index among its proven entries."""
    agent_id = material.agent_id
    for seq, canonical in material.records:
        files[layout.record_path(agent_id, seq)] = canonical
    proven = [e for e in material.entries if e.index < size]
    paths = log_store.inclusion_proofs([e.index for e in proven], size) if proven else {}
    entries = [
        LoggedEntry(index=e.index, entry=e.entry, path=tuple(paths[e.index])) for e in proven
    ]
    entries += [  # sequenced after the checkpoint: no proof yet
        LoggedEntry(index=e.index, entry=e.entry, path=()) for e in material.entries
        if e.index >= size
    ]  # fmt: skip
    entries += [  # folded before the log existed
        LoggedEntry(index=-1, entry=encode_entry(fold), path=()) for fold in material.unlogged_folds
    ]
    files[layout.log_path(agent_id)] = layout.encode_agent_log(
        AgentLog(agent_id=agent_id, checkpoint_size=size, entries=tuple(entries))
    )
    files[layout.tokens_path(agent_id)] = layout.encode_tokens(material.tokens)
    _identity_files(files, material)
    return max((e.index for e in proven), default=-1)


def _identity_files(files: dict[str, bytes], material: AgentMaterial) -> None:
    agent_id = material.agent_id
    identity = material.identity
    if identity is not None:
        path = layout.identity_path
        files[path(agent_id, Identity.REGISTRAR_RECORD)] = identity.model_dump_json().encode()
        files[path(agent_id, Identity.EK_CERTIFICATE)] = identity.ek_certificate
        for number, der in enumerate(material.ek_chain, start=1):
            files[path(agent_id, f"{Identity.EK_CHAIN}/{number}.der")] = der
        if identity.location_key_public is not None:
            files[path(agent_id, Identity.LOCATION_KEY)] = identity.location_key_public
        if identity.location_key_certify_attest is not None:
            files[path(agent_id, Identity.CERTIFY_ATTEST)] = identity.location_key_certify_attest
        if identity.location_key_certify_signature is not None:
            files[path(agent_id, Identity.CERTIFY_SIGNATURE)] = (
                identity.location_key_certify_signature
            )
    for name, public in material.publics.items():
        files[layout.ak_path(agent_id, bytes.fromhex(name))] = public


def _documents(
    files: dict[str, bytes], sources: BundleSources, policies: set[bytes], zones: set[bytes]
) -> None:
    found = sources.documents([*policies, *zones])
    for digest in policies:
        document = found.get(digest)
        if document is not None and document.kind is DocumentKind.POLICY:
            files[layout.policy_path(digest)] = document.body
        else:
            log.warning("policy %s named by records is not stored: left out", digest.hex()[:16])
    for digest in zones:
        document = found.get(digest)
        if document is not None and document.kind is DocumentKind.ZONES:
            files[layout.zones_path(digest)] = document.body
        else:
            log.warning("zones file %s named by records is not stored: left out", digest.hex()[:16])


def _window_checkpoint(
    files: dict[str, bytes], log_store: TransparencyLog, highest: int, size: int
) -> None:
    """The first checkpoint that held every proven entry, and its consistency proof to the
    checkpoint the proofs are against: when the bundle's entries were in the log by."""
    if highest < 0:
        return
    first = log_store.first_checkpoint_covering(highest + 1)
    if first is None:
        raise NotFound("no checkpoint holds the window's entries")
    files[layout.WINDOW_CHECKPOINT] = first.encode()
    old = decode_checkpoint(unb64url(first.split(".")[1], "payload")).size
    if old < size:
        files[layout.CONSISTENCY] = layout.encode_consistency(
            old, size, log_store.consistency_proof(old, size)
        )
