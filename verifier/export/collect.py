"""What an export reads from the verifier's database and the registrar for one agent's window.

For ``[start, end]``: every full record and every fold that overlaps it, plus the link just
before it (the state the window starts in); the agent's log entries for those links and the
tokens, audit entries and token entries of the window; the identity (the registrar's record,
the AK public areas the records name, the location key) and the policies and zones the records
name, by digest.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, Row, func, select

from allowlists.ek_trust import EkTrustStore, validate_ek_certificate
from geoattest.errors import EkUntrusted, NotFound
from geoattest.registrar_client import RegistrarClient
from geoattest.wire import AgentView
from verifier.core.log_entry import FoldEntry, decode_entry
from verifier.core.record import decode_record
from verifier.export.layout import IssuedToken
from verifier.export.tokens import TokenSource
from verifier.storage.documents import Document, DocumentKind, DocumentStore, tpm_name
from verifier.storage.log import StoredEntry, TransparencyLog
from verifier.storage.models import RecordFold, RecordRow, VerifiedAgent
from verifier.storage.records import stored_body

LINK_KINDS = ("record", "fold")


@dataclass(slots=True, kw_only=True)
class AgentMaterial:
    agent_id: str
    policy_name: str
    records: list[tuple[int, bytes]] = field(default_factory=list)  # (seq, canonical bytes)
    entries: list[StoredEntry] = field(default_factory=list)  # sequenced, of this window
    unlogged_folds: list[FoldEntry] = field(default_factory=list)
    identity: AgentView | None = None
    publics: dict[str, bytes] = field(default_factory=dict)  # TPM name hex → TPM2B_PUBLIC
    ek_chain: list[bytes] = field(default_factory=list)  # issuers of the EK certificate, DER
    tokens: list[IssuedToken] = field(default_factory=list)
    policy_digests: set[bytes] = field(default_factory=set)
    zones_digests: set[bytes] = field(default_factory=set)


class BundleSources:
    def __init__(
        self,
        *,
        engine: Engine,
        log: TransparencyLog,
        documents: DocumentStore,
        registrar: RegistrarClient,
        tokens: TokenSource,
        ek_store: EkTrustStore | None = None,
    ) -> None:
        self._engine = engine
        self._log = log
        self._documents = documents
        self._registrar = registrar
        self._tokens = tokens
        self._ek_store = ek_store

    def agents_of_policy(self, policy: str) -> list[str]:
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(VerifiedAgent.agent_id)
                .where(VerifiedAgent.policy_name == policy)
                .order_by(VerifiedAgent.agent_id)
            )
            return [agent_id for (agent_id,) in rows]

    def agents_of_zone(self, zone_id: str, policies: dict[str, list[str]]) -> list[str]:
        """Agents whose policy's location check names ``zone_id`` (``policies``: name → zones)."""
        names = [name for name, zones in policies.items() if zone_id in zones]
        return sorted({a for name in names for a in self.agents_of_policy(name)})

    def material(self, agent_id: str, start: dt.datetime, end: dt.datetime) -> AgentMaterial:
        with self._engine.connect() as connection:
            agent = connection.execute(
                select(VerifiedAgent.policy_name, VerifiedAgent.ak_public,
                       VerifiedAgent.location_key_public)
                .where(VerifiedAgent.agent_id == agent_id)
            ).first()  # fmt: skip
            if agent is None:
                raise NotFound(f"agent {agent_id!r} is not under verification")
            first_seq, last_seq = _window_seqs(connection, agent_id, start, end)
            material = AgentMaterial(agent_id=agent_id, policy_name=agent.policy_name)
            if last_seq >= first_seq:
                material.records = [
                    (int(seq), stored_body(bytes(body)))
                    for seq, body in connection.execute(
                        select(RecordRow.seq, RecordRow.body)
                        .where(
                            RecordRow.agent_id == agent_id,
                            RecordRow.seq.between(first_seq, last_seq),
                        )
                        .order_by(RecordRow.seq)
                    )
                ]
                folds = connection.execute(
                    select(RecordFold).where(
                        RecordFold.agent_id == agent_id,
                        RecordFold.last_seq >= first_seq,
                        RecordFold.first_seq <= last_seq,
                    )
                ).all()
            else:
                folds = []
        self._entries(material, start, end, first_seq, last_seq, folds)
        self._identity(material, agent.ak_public, agent.location_key_public)
        material.tokens = self._tokens.tokens(agent_id, start, end)
        for _, canonical in material.records:
            record = decode_record(canonical)
            if record.policy is not None:
                material.policy_digests.add(record.policy.sha256)
            if record.zones_sha256 is not None:
                material.zones_digests.add(record.zones_sha256)
        return material

    def documents(self, digests: Sequence[bytes]) -> dict[bytes, Document]:
        return self._documents.get(digests)

    def _entries(
        self,
        material: AgentMaterial,
        start: dt.datetime,
        end: dt.datetime,
        first_seq: int,
        last_seq: int,
        folds: Sequence[Row[Any]],
    ) -> None:
        agent_id = material.agent_id
        links = self._log.entries_of(agent_id, LINK_KINDS, first_seq=first_seq, last_seq=last_seq)
        others = [
            e
            for e in self._log.entries_of(agent_id, ("token", "audit"))
            if start <= _entry_time(e) <= end
        ]
        material.entries = sorted([*links, *others], key=lambda e: e.index)
        logged = {e.ref_seq for e in links if e.kind == "fold"}
        for fold in folds:
            if fold.first_seq not in logged:
                material.unlogged_folds.append(
                    FoldEntry(
                        agent_id=agent_id,
                        first_seq=fold.first_seq,
                        last_seq=fold.last_seq,
                        first_at=_utc(fold.first_at),
                        last_at=_utc(fold.last_at),
                        prev=bytes(fold.prev),
                        head=bytes(fold.head),
                        outcomes=json.loads(fold.outcomes),
                        max_gap_ms=0,
                    )
                )

    def _identity(
        self, material: AgentMaterial, ak_public: bytes, location_key: bytes | None
    ) -> None:
        material.identity = self._registrar.get_agent(material.agent_id)
        names = {decode_record(c).ak_name for _, c in material.records} - {None}
        stored = self._documents.named(DocumentKind.TPM_PUBLIC, [n.hex() for n in names if n])
        material.publics = {name: doc.body for name, doc in stored.items()}
        for public in (ak_public, location_key):
            if public is not None:
                material.publics.setdefault(tpm_name(public), public)
        if self._ek_store is not None and material.identity is not None:
            try:
                chain = validate_ek_certificate(
                    material.identity.ek_certificate, self._ek_store, now=dt.datetime.now(dt.UTC)
                )
                material.ek_chain = [c.raw for c in chain.certificates[1:]]
            except EkUntrusted:
                material.ek_chain = []  # the auditor's CA directory decides; nothing to add


def _window_seqs(
    connection: Connection, agent_id: str, start: dt.datetime, end: dt.datetime
) -> tuple[int, int]:
    """The seq range of the links overlapping ``[start, end]``, widened by the link before."""
    execute = connection.execute
    bounds = execute(
        select(func.min(RecordRow.seq), func.max(RecordRow.seq)).where(
            RecordRow.agent_id == agent_id,
            RecordRow.ended_at >= start,
            RecordRow.ended_at <= end,
        )
    ).one()
    fold_bounds = execute(
        select(func.min(RecordFold.first_seq), func.max(RecordFold.last_seq)).where(
            RecordFold.agent_id == agent_id,
            RecordFold.last_at >= start,
            RecordFold.first_at <= end,
        )
    ).one()
    lows = [b for b in (bounds[0], fold_bounds[0]) if b is not None]
    highs = [b for b in (bounds[1], fold_bounds[1]) if b is not None]
    before_record = execute(
        select(func.max(RecordRow.seq)).where(
            RecordRow.agent_id == agent_id, RecordRow.ended_at < start
        )
    ).scalar()
    before_fold = execute(
        select(func.max(RecordFold.first_seq)).where(
            RecordFold.agent_id == agent_id, RecordFold.last_at < start
        )
    ).scalar()
    befores = [b for b in (before_record, before_fold) if b is not None]
    if befores:
        lows.append(max(befores))
        highs.append(max(befores))
    if not lows:
        return 1, 0
    return int(min(lows)), int(max(highs))


def _entry_time(entry: StoredEntry) -> dt.datetime:
    parsed = decode_entry(entry.entry)
    moment = getattr(parsed, "issued_at", None) or getattr(parsed, "at", None)
    return moment if isinstance(moment, dt.datetime) else entry.queued_at


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
