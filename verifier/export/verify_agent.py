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
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import tpm
from allowlists.ek_trust import EkTrustStore, validate_ek_certificate
from geoattest.errors import (
    BundleInvalid,
    CertifyInvalid,
    EkUntrusted,
    EvidenceMalformed,
    GeoattestError,
    LogEntryInvalid,
    LogProofInvalid,
    QuoteSignatureInvalid,
    TpmFormatError,
)
from geoattest.wire import AgentView, location_key_qualifying_data
from geofence import ZoneDecision, decode_evidence
from verifier.core.checkpoint import Checkpoint
from verifier.core.log_entry import FoldEntry, LogEntry, RecordEntry, TokenEntry, decode_entry
from verifier.core.merkle import leaf_hash, verify_inclusion
from verifier.core.policy import AttestationPolicy
from verifier.core.reasons import Reason
from verifier.core.record import (
    EvidenceRecord,
    RecordKind,
    decode_record,
    record_digest,
    track_digest,
)
from verifier.core.reverify import reverify_record
from verifier.core.round import LOCATION_TRACK_LENGTH, Check, Verdict
from verifier.core.states import Outcome
from verifier.export import layout
from verifier.export.layout import Identity as Files
from verifier.export.results import Fix, Identity, Link, LinkKind

_MEMORY_RESETS = frozenset({Reason.OPERATOR_READMITTED, Reason.AK_CHANGED})
TRACK_NOT_CHECKED = (
    "location track checks (teleport, frozen fix, clock jump, vertical speed) of records whose "
    "previous rounds were folded: their fixes are not kept"
)
NOT_JUDGED = "not judged"  # a fix of a round whose location check did not run (e.g. a reboot)


@dataclass(slots=True)
class AgentChecks:
    """What one agent's verification collects on the way."""

    links: list[Link] = field(default_factory=list)
    not_checked: Counter[str] = field(default_factory=Counter)
    identity: Identity | None = None
    records_verified: int = 0
    location_required: bool = False
    max_age: dt.timedelta | None = None  # the lease of the policy of the last round

    def skip(self, what: str) -> None:
        self.not_checked[what] += 1


@dataclass(frozen=True, slots=True, kw_only=True)
class _Full:
    path: str
    canonical: bytes
    record: EvidenceRecord
    digest: bytes


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
    publics = _identity(agent_id, files, records, ek_store, checks)
    _reverify(records, publics, policies, anchored, checks)
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


def _records(agent_id: str, files: Mapping[str, bytes]) -> dict[int, _Full]:
    prefix = f"{layout.agent_dir(agent_id)}/records/"
    found: dict[int, _Full] = {}
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
        found[record.seq] = _Full(
            path=path, canonical=canonical, record=record, digest=record_digest(canonical)
        )
    return found


# --- 3. the hash chain -----------------------------------------------------------------------


def _chain(
    agent_id: str,
    records: Mapping[int, _Full],
    folds: list[FoldEntry],
    logged: set[int],
    checks: AgentChecks,
) -> set[int]:
    """Check the chain; returns the seqs of the records the log vouches for."""
    where = layout.log_path(agent_id)
    links: list[tuple[int, int, _Full | FoldEntry]] = [(s, s, f) for s, f in records.items()]
    links += [(f.first_seq, f.last_seq, f) for f in folds]
    links.sort(key=lambda item: item[0])
    previous: tuple[int, bytes] | None = None  # (last seq, digest) of the link before
    for first, last, link in links:
        path = link.path if isinstance(link, _Full) else where
        prev = link.record.prev if isinstance(link, _Full) else link.prev
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
        previous = (last, link.digest if isinstance(link, _Full) else link.head)
    anchored: set[int] = set()
    vouched_next = False  # the link after this one is vouched for and names its digest
    for first, _, link in reversed(links):
        if isinstance(link, _Full):
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
    agent_id: str, links: list[tuple[int, int, _Full | FoldEntry]], checks: AgentChecks
) -> None:
    state: str | None = None
    for _, _, link in links:
        if isinstance(link, _Full):
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


# --- 4. identity -----------------------------------------------------------------------------


def _identity(
    agent_id: str,
    files: Mapping[str, bytes],
    records: Mapping[int, _Full],
    ek_store: EkTrustStore,
    checks: AgentChecks,
) -> dict[bytes, tpm.TpmPublic]:
    """Check the identity files; returns the TPM public areas by name (AKs, location key)."""
    publics: dict[bytes, tpm.TpmPublic] = {}
    for name in {r.record.ak_name for r in records.values()} - {None}:
        assert name is not None  # noqa: S101  # filtered above
        path = layout.ak_path(agent_id, name)
        if path not in files:
            checks.skip("records whose AK is not in the bundle: not re-verified")
            continue
        ak = _public(files[path], path)
        if ak.name != name:
            raise BundleInvalid("is not the AK its name says", file=path, check="AK name")
        publics[name] = ak
    view = _registrar_record(agent_id, files)
    location = _location_key(agent_id, files, view, publics)
    if location is not None:
        publics[location.name] = location
    nonces: set[bytes] = set()
    for full in records.values():
        evidence = full.record.evidence
        if evidence is not None:
            if evidence.nonce in nonces:
                raise BundleInvalid("answers a nonce already answered", file=full.path,
                                    check="nonce replay")  # fmt: skip
            nonces.add(evidence.nonce)
    times = sorted(r.record.ended_at for r in records.values())
    checks.identity = _ek(agent_id, files, view, ek_store, times, publics, location)
    checks.skip("credential activation (EK to AK): interactive, taken from the registrar's record")
    return publics


def _public(data: bytes, path: str) -> tpm.TpmPublic:
    try:
        return tpm.parse_tpm2b_public(data)
    except TpmFormatError as e:
        raise BundleInvalid(e.message, file=path, check="TPM public area") from e


def _registrar_record(agent_id: str, files: Mapping[str, bytes]) -> AgentView:
    path = layout.identity_path(agent_id, Files.REGISTRAR_RECORD)
    if path not in files:
        raise BundleInvalid("is missing", file=path, check="presence")
    try:
        view = AgentView.model_validate_json(files[path])
    except ValueError as e:
        raise BundleInvalid(f"does not parse: {e}", file=path, check="format") from e
    if view.agent_id != agent_id:
        raise BundleInvalid(f"is agent {view.agent_id!r}'s", file=path, check="agent")
    ek_path = layout.identity_path(agent_id, Files.EK_CERTIFICATE)
    if files.get(ek_path) != view.ek_certificate:
        raise BundleInvalid("is not the EK certificate of the registrar's record", file=ek_path,
                            check="identity")  # fmt: skip
    return view


def _location_key(
    agent_id: str,
    files: Mapping[str, bytes],
    view: AgentView,
    publics: Mapping[bytes, tpm.TpmPublic],
) -> tpm.TpmPublic | None:
    path = layout.identity_path(agent_id, Files.LOCATION_KEY)
    if path not in files:
        return None
    key = _public(files[path], path)
    if view.location_key_public != files[path]:
        raise BundleInvalid("is not the location key of the registrar's record", file=path,
                            check="identity")  # fmt: skip
    attest_path = layout.identity_path(agent_id, Files.CERTIFY_ATTEST)
    signature_path = layout.identity_path(agent_id, Files.CERTIFY_SIGNATURE)
    if view.ak_public is None or attest_path not in files or signature_path not in files:
        raise BundleInvalid("comes without its certification by the AK", file=path,
                            check="location key certification")  # fmt: skip
    ak = _public(view.ak_public, layout.identity_path(agent_id, Files.REGISTRAR_RECORD))
    try:
        tpm.check_location_key_attributes(key)
        tpm.verify_certify(
            signer=ak,
            attest=files[attest_path],
            signature=files[signature_path],
            certified=key,
            qualifying_data=location_key_qualifying_data(agent_id, ak.name),
        )
    except (CertifyInvalid, GeoattestError) as e:
        raise BundleInvalid(e.message, file=attest_path, check="location key certification") from e
    return key


def _ek(
    agent_id: str,
    files: Mapping[str, bytes],
    view: AgentView,
    store: EkTrustStore,
    times: list[dt.datetime],
    publics: Mapping[bytes, tpm.TpmPublic],
    location: tpm.TpmPublic | None,
) -> Identity:
    path = layout.identity_path(agent_id, Files.EK_CERTIFICATE)
    chain_prefix = layout.identity_path(agent_id, Files.EK_CHAIN) + "/"
    intermediates = [files[p] for p in sorted(files) if p.startswith(chain_prefix)]
    chain = None
    for moment in dict.fromkeys([times[0], times[-1]] if times else []):
        try:
            chain = validate_ek_certificate(
                files[path], store, now=moment, intermediates=intermediates
            )
        except EkUntrusted as e:
            raise BundleInvalid(
                f"does not chain to a given EK CA at {moment:%Y-%m-%d %H:%M:%S}Z: {e.message}",
                file=path,
                check="EK chain",
            ) from e
    leaf = chain.leaf if chain is not None else None
    return Identity(
        ek_fingerprint=hashlib.sha256(files[path]).hexdigest(),
        ek_subject=leaf.subject if leaf else "",
        ek_issuer=leaf.issuer if leaf else "",
        tpm_manufacturer=leaf.tpm_manufacturer if leaf else view.tpm_manufacturer,
        tpm_model=leaf.tpm_model if leaf else view.tpm_model,
        chain=tuple(c.subject or c.label for c in chain.certificates[1:]) if chain else (),
        ak_names=tuple(sorted(n.hex() for n in publics if location is None or n != location.name)),
        location_key=location.name.hex() if location is not None else None,
    )


# --- 5. re-verification ----------------------------------------------------------------------


def _reverify(
    records: Mapping[int, _Full],
    publics: Mapping[bytes, tpm.TpmPublic],
    policies: Mapping[bytes, AttestationPolicy | str],
    anchored: set[int],
    checks: AgentChecks,
) -> None:
    track: list[bytes] = []
    previous_seq: int | None = None
    for seq in sorted(records):
        full = records[seq]
        record = full.record
        if previous_seq is None or seq != previous_seq + 1:
            track = []  # a fold in between: the rounds' location evidence is not kept
            known = False
        else:
            known = True
        previous_seq = seq
        policy = policies.get(record.policy.sha256) if record.policy else None
        if isinstance(policy, AttestationPolicy):
            checks.location_required = checks.location_required or policy.location is not None
            checks.max_age = policy.max_age
        reverified, fix = _one(full, policy, publics, track if known else None, checks)
        if record.outcome is Outcome.PASSED and record.evidence is not None:
            if record.evidence.location is not None and fix is not None:
                track = [*track, record.evidence.location][-LOCATION_TRACK_LENGTH:]
        elif record.kind is RecordKind.OPERATOR and record.reason in _MEMORY_RESETS:
            track = []  # the operator started the agent over: the verifier forgot its track
        checks.links.append(_link(full, fix, seq in anchored, reverified))


def _one(
    full: _Full,
    policy: AttestationPolicy | str | None,
    publics: Mapping[bytes, tpm.TpmPublic],
    track: list[bytes] | None,
    checks: AgentChecks,
) -> tuple[bool, Fix | None]:
    record = full.record
    if record.kind is not RecordKind.ROUND or record.evidence is None:
        return False, None
    if not isinstance(policy, AttestationPolicy):
        checks.skip(policy or "records whose policy is not in the bundle: not re-verified")
        return False, None
    ak = publics.get(record.ak_name) if record.ak_name else None
    if ak is None:
        return False, None
    location_key = publics.get(record.location_key_name) if record.location_key_name else None
    given = None
    context = record.context
    if track is not None and context is not None and len(track) >= context.track_length:
        candidate = track[len(track) - context.track_length :] if context.track_length else []
        if track_digest(candidate) == context.track_sha256:
            given = candidate
    again = reverify_record(record, ak=ak, policy=policy, location_key=location_key, track=given)
    if not again.consistent:
        raise BundleInvalid(
            f"re-verified differently: {again.mismatches[0]}", file=full.path,
            check="re-verification",
        )  # fmt: skip
    for what in again.not_checked:
        if what.startswith("location track checks"):  # the count differs per record
            what = TRACK_NOT_CHECKED
        checks.skip(what)
    checks.records_verified += 1
    return True, _fix(record, policy, location_key)


def _fix(
    record: EvidenceRecord, policy: AttestationPolicy, key: tpm.TpmPublic | None
) -> Fix | None:
    evidence = record.evidence
    location = policy.location
    if evidence is None or evidence.location is None or location is None or key is None:
        return None
    zones = ", ".join(location.zone_ids)
    try:
        signature = tpm.parse_tpmt_signature(evidence.location_signature or b"")
        tpm.verify_signature(key, evidence.location, signature)
        ev = decode_evidence(evidence.location)
    except (QuoteSignatureInvalid, TpmFormatError, ValueError):
        return Fix(latitude=0.0, longitude=0.0, accuracy_m=0.0, decision="unverified",
                   zone_id=zones)  # fmt: skip
    accuracy = ev.horizontal_accuracy_m
    decision, zone = "uncertain", zones
    if accuracy is not None:
        verdicts = [
            location.zones.decide(z, ev.latitude, ev.longitude, accuracy) for z in location.zone_ids
        ]
        inside = [v for v in verdicts if v.decision is ZoneDecision.INSIDE]
        if inside:
            decision, zone = "inside", inside[0].zone_id
        elif any(v.decision is ZoneDecision.UNCERTAIN for v in verdicts):
            decision = "uncertain"
        else:
            decision = "outside"
    judged = record.checks and any(
        c.check is Check.LOCATION and c.verdict in (Verdict.PASSED, Verdict.FAILED)
        for c in record.checks
    )
    return Fix(
        latitude=ev.latitude,
        longitude=ev.longitude,
        accuracy_m=accuracy or 0.0,
        decision=decision if judged else NOT_JUDGED,
        zone_id=zone,
    )


def _link(full: _Full, fix: Fix | None, logged: bool, reverified: bool) -> Link:
    record = full.record
    return Link(
        agent_id=record.agent_id,
        kind=LinkKind(record.kind.value),
        first_seq=record.seq,
        last_seq=record.seq,
        started_at=record.started_at,
        ended_at=record.ended_at,
        outcome=record.outcome.value if record.outcome else None,
        reason=record.reason.value if record.reason else None,
        from_state=record.from_state.value,
        to_state=record.to_state.value,
        fix=fix,
        message=record.message,
        logged=logged,
        reverified=reverified,
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
