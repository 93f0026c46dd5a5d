"""Verifying one agent of a residency bundle, offline (``verify.py`` runs it per agent).

In order, each refusal a ``BundleInvalid`` naming the file and the check:

1. ``log.json``: every entry is this agent's, decodes, and (when it has an index) its inclusion
   proof leads to the checkpoint's root;
2. every record: canonical, this agent's, stored under its own seq; a logged record's digest is
   the one the log holds;
3. the hash chain over records and logged folds: no seq missing, none reordered, each link
   naming the digest of the one before; a record is vouched for by the log directly or through
   the chain (the record after it names its digest);
4. identity: the AK public areas the records name; the location key and its TPM2_Certify by the
   registrar's AK; the registrar's record consistent with both; the EK certificate's chain to
   one of the auditor's CAs at the window's first and last record; no nonce used twice;
5. each full round record re-verified (``verifier.core.reverify``) with its AK, policy, zones,
   location key and, when the bundle holds the previous rounds, its location track; every
   verdict must come out as recorded;
6. tokens: each one's SHA-256 is the one a logged token entry holds.

What cannot be checked offline is listed, never passed silently. Pure: bytes in, results out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping

from allowlists.ek_trust import EkTrustStore
from geoattest.errors import (
    BundleInvalid,
    EvidenceMalformed,
    LogEntryInvalid,
    LogProofInvalid,
)
from verifier.core.checkpoint import Checkpoint
from verifier.core.log_entry import FoldEntry, LogEntry, RecordEntry, TokenEntry, decode_entry
from verifier.core.merkle import leaf_hash, verify_inclusion
from verifier.core.policy import AttestationPolicy
from verifier.core.record import decode_record, record_digest
from verifier.export import layout
from verifier.export.agent_checks import AgentChecks, FullRecord
from verifier.export.results import Link, LinkKind
from verifier.export.verify_identity import verify_identity
from verifier.export.verify_rounds import reverify_records


def verify_agent(
    agent_id: str,
    files: Mapping[str, bytes],
    *,
    checkpoint: Checkpoint,
    policies: Mapping[bytes, AttestationPolicy | str],
    ek_store: EkTrustStore,
) -> AgentChecks:
    """Run checks 1-6 for ``agent_id`` (see the module docstring)."""
    checks = AgentChecks()
    entries = _log_entries(agent_id, files, checkpoint, checks)
    records = _records(agent_id, files)
    logged = {e.seq: e for e in entries.values() if isinstance(e, RecordEntry)}
    for full in records.values():
        entry = logged.get(full.record.seq)
        if entry is not None and entry.digest != full.digest:
            raise BundleInvalid(
                "is not the record the transparency log holds for this seq",
                file=full.path,
                check="inclusion",
            )
    folds = [e for e in entries.values() if isinstance(e, FoldEntry)]
    anchored = _chain(agent_id, records, folds, set(logged), checks)
    publics = verify_identity(agent_id, files, records, ek_store, checks)
    reverify_records(records, publics, policies, anchored, checks)
    _tokens(agent_id, files, entries, checks)
    checks.links.sort(key=lambda link: link.first_seq)
    return checks


# --- 1. the agent's log entries --------------------------------------------------------------


def _log_entries(
    agent_id: str, files: Mapping[str, bytes], checkpoint: Checkpoint, checks: AgentChecks
) -> dict[int, LogEntry]:
    """Entries by log index (unproven ones by negative numbers), their proofs checked."""
    where = layout.log_path(agent_id)
    if where not in files:
        raise BundleInvalid("is missing", file=where, check="presence")
    agent_log = layout.decode_agent_log(files[where], where)
    if agent_log.agent_id != agent_id or agent_log.checkpoint_size != checkpoint.size:
        raise BundleInvalid(
            "is not this agent's or not against the bundle's checkpoint", file=where, check="log"
        )
    found: dict[int, LogEntry] = {}
    unproven = 0
    for logged in agent_log.entries:
        try:
            entry = decode_entry(logged.entry)
        except LogEntryInvalid as e:
            raise BundleInvalid(e.message, file=where, check="log entry") from e
        if entry.agent_id != agent_id:
            raise BundleInvalid(
                f"entry {logged.index} is agent {entry.agent_id!r}'s, not {agent_id!r}'s",
                file=where,
                check="agent",
            )
        if logged.path or (logged.index >= 0 and checkpoint.size > 0):
            try:
                verify_inclusion(
                    logged.index, checkpoint.size, leaf_hash(logged.entry), logged.path,
                    checkpoint.root,
                )  # fmt: skip
            except LogProofInvalid as e:
                raise BundleInvalid(
                    f"entry {logged.index}: {e.message}", file=where, check="inclusion"
                ) from e
            found[logged.index] = entry
        else:
            unproven += 1
            found[-unproven] = entry
            checks.skip("log entries sequenced after the bundle's checkpoint or folded before "
                        "the log existed: not vouched for by the log")  # fmt: skip
    return found


# --- 2. the records --------------------------------------------------------------------------


def _records(agent_id: str, files: Mapping[str, bytes]) -> dict[int, FullRecord]:
    prefix = f"{layout.agent_dir(agent_id)}/records/"
    found: dict[int, FullRecord] = {}
    for path in sorted(p for p in files if p.startswith(prefix)):
        canonical = files[path]
        try:
            record = decode_record(canonical)
        except EvidenceMalformed as e:
            raise BundleInvalid(e.message, file=path, check="record format") from e
        if record.agent_id != agent_id:
            raise BundleInvalid(
                f"is a record of agent {record.agent_id!r}, in the bundle of {agent_id!r}",
                file=path,
                check="agent",
            )
        if path != layout.record_path(agent_id, record.seq):
            raise BundleInvalid(f"holds record seq {record.seq}", file=path, check="record seq")
        found[record.seq] = FullRecord(
            path=path, canonical=canonical, record=record, digest=record_digest(canonical)
        )
    return found


# --- 3. the hash chain -----------------------------------------------------------------------


def _chain(
    agent_id: str,
    records: Mapping[int, FullRecord],
    folds: list[FoldEntry],
    logged: set[int],
    checks: AgentChecks,
) -> set[int]:
    """Check the chain; returns the seqs of the records the log vouches for."""
    where = layout.log_path(agent_id)
    links: list[tuple[int, int, FullRecord | FoldEntry]] = [(s, s, f) for s, f in records.items()]
    links += [(f.first_seq, f.last_seq, f) for f in folds]
    links.sort(key=lambda item: item[0])
    previous: tuple[int, bytes] | None = None  # (last seq, digest) of the link before
    for first, last, link in links:
        path = link.path if isinstance(link, FullRecord) else where
        prev = link.record.prev if isinstance(link, FullRecord) else link.prev
        if previous is not None:
            if first != previous[0] + 1:
                raise BundleInvalid(
                    f"seq {first} follows seq {previous[0]}: records missing or reordered",
                    file=path,
                    check="hash chain",
                )
            if prev != previous[1]:
                raise BundleInvalid(
                    f"seq {first} does not name the digest of the record before it",
                    file=path,
                    check="hash chain",
                )
        elif first == 1 and prev != bytes(32):
            raise BundleInvalid("the first record does not start the chain", file=path)
        previous = (last, link.digest if isinstance(link, FullRecord) else link.head)
    anchored: set[int] = set()
    vouched_next = False  # the link after this one is vouched for and names its digest
    for first, _, link in reversed(links):
        if isinstance(link, FullRecord):
            if first in logged or vouched_next:
                anchored.add(first)
                vouched_next = True
            else:
                vouched_next = False
                checks.skip("records at the end of the window not yet in the log (hot)")
        else:
            vouched_next = True  # a fold is in the log and names the digest before it
    _fold_links(agent_id, links, checks)
    return anchored


def _fold_links(
    agent_id: str, links: list[tuple[int, int, FullRecord | FoldEntry]], checks: AgentChecks
) -> None:
    state: str | None = None
    for _, _, link in links:
        if isinstance(link, FullRecord):
            state = link.record.to_state.value
            continue
        checks.links.append(
            Link(
                agent_id=agent_id,
                kind=LinkKind.FOLD,
                first_seq=link.first_seq,
                last_seq=link.last_seq,
                started_at=link.first_at,
                ended_at=link.last_at,
                outcome=None,
                reason=None,
                from_state=state,
                to_state=state,
                outcomes=dict(link.outcomes),
                max_gap=dt.timedelta(milliseconds=link.max_gap_ms),
                logged=True,
            )
        )


# --- 6. tokens -------------------------------------------------------------------------------


def _tokens(
    agent_id: str, files: Mapping[str, bytes], entries: Mapping[int, LogEntry], checks: AgentChecks
) -> None:
    where = layout.tokens_path(agent_id)
    if where not in files:
        raise BundleInvalid("is missing", file=where, check="presence")
    logged = {e.jti: (index, e) for index, e in entries.items() if isinstance(e, TokenEntry)}
    for token in layout.decode_tokens(files[where], where):
        found = logged.get(token.jti)
        if found is None:
            checks.skip("tokens not in the transparency log: their issuance is not proven")
            continue
        if hashlib.sha256(token.token.encode()).digest() != found[1].token_sha256:
            raise BundleInvalid(
                f"token {token.jti!r} is not the token the log holds", file=where, check="token"
            )
        if found[0] < 0:
            checks.skip("tokens sequenced after the bundle's checkpoint")
