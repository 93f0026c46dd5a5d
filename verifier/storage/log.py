"""The transparency log at rest: entries queued by the transactions that make them, sequenced
into an RFC 6962 tree, perfect nodes stored as they complete, checkpoints signed and kept.

- *Queue* (``verifier.storage.log_queue``): entries written inside the caller's transaction, so
  a kept record and its entry commit together (``verifier.storage.verdicts``), so do a fold and
  its entry, an operator's change and its audit entry.
- *Sequencer.* ``sequence`` gives queued entries their leaf index in queue order, stores every
  perfect subtree that completes (``verifier_log_nodes``) and the new size and root, in one
  transaction guarded on the size it read: two sequencers cannot both extend the tree.
- *Signer.* ``sign`` signs the current tree head as a checkpoint when it grew (or none exists).
- *Proofs* are built from perfect nodes fetched in one query each (``verifier.core.merkle``).

The beat task (``verifier.worker``) sequences and signs every ``log_checkpoint_seconds``.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    Table,
    bindparam,
    func,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError

from geoattest.db import as_utc
from geoattest.errors import ConfigurationError, Conflict, LogProofInvalid, NotFound
from verifier.core import merkle
from verifier.core.checkpoint import Checkpoint, SignedCheckpoint, check_origin, sign_checkpoint
from verifier.core.jws import Signer
from verifier.core.log_entry import LogEntry
from verifier.core.merkle import NodeId
from verifier.storage.log_queue import enqueue, entry_bytes
from verifier.storage.models import CheckpointRow, LogEntryRow, LogNode, LogState

log = logging.getLogger(__name__)

_ENTRIES: Table = LogEntryRow.__table__  # type: ignore[assignment]  # a declarative Table
_NODES: Table = LogNode.__table__  # type: ignore[assignment]
_STATE: Table = LogState.__table__  # type: ignore[assignment]
_CHECKPOINTS: Table = CheckpointRow.__table__  # type: ignore[assignment]

SEQUENCE_BATCH = 50_000
_FETCH_CHUNK = 400  # node ids per query (SQLite's variable limit, with room)


@dataclass(frozen=True, slots=True, kw_only=True)
class TreeHead:
    origin: str
    size: int
    root: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEntry:
    index: int
    kind: str
    agent_id: str | None
    ref_seq: int | None
    entry: bytes
    leaf_hash: bytes
    queued_at: dt.datetime


class TransparencyLog:
    def __init__(self, engine: Engine, *, origin: str | None = None) -> None:
        """``origin`` names the log in its checkpoints; None: the stored one, or one generated
        when the log is created. A configured origin that differs from the stored one is a
        ``ConfigurationError`` (a log cannot be renamed)."""
        self._engine = engine
        self._origin = check_origin(origin) if origin is not None else None
        self._created = False

    # --- writing ------------------------------------------------------------------------------

    def append(self, entries: Sequence[LogEntry], now: dt.datetime) -> None:
        with self._engine.begin() as connection:
            enqueue(connection, entries, now)

    def sequence(self, now: dt.datetime, *, limit: int = SEQUENCE_BATCH) -> int:
        """Give up to ``limit`` queued entries their leaf index; returns how many. Raises
        ``Conflict`` (nothing changed) when another sequencer extended the tree meanwhile."""
        with self._engine.begin() as connection:
            head = self._head(connection, now)
            queued = connection.execute(
                select(_ENTRIES.c.id, _ENTRIES.c.leaf_hash)
                .where(_ENTRIES.c.idx.is_(None))
                .order_by(_ENTRIES.c.id)
                .limit(limit)
            ).all()
            if not queued:
                return 0
            stack = list(_fetch(connection, merkle.frontier(head.size)).items())
            stack.sort(key=lambda item: -item[0].level)
            completed: list[tuple[NodeId, bytes]] = []
            for offset, (_, leaf) in enumerate(queued):
                node, value = NodeId(0, head.size + offset), bytes(leaf)
                while stack and stack[-1][0].level == node.level:
                    left = stack.pop()[1]
                    node, value = (
                        NodeId(node.level + 1, node.index >> 1),
                        merkle.node_hash(left, value),
                    )
                    completed.append((node, value))
                stack.append((node, value))
            size = head.size + len(queued)
            root = _fold_root([value for _, value in stack])
            moved = connection.execute(
                update(_STATE)
                .where(_STATE.c.id == 1, _STATE.c.size == head.size)
                .values(size=size, root=root, updated_at=now)
            )
            if moved.rowcount != 1:
                raise Conflict("another sequencer extended the log meanwhile; try again")
            connection.execute(
                update(_ENTRIES)
                .where(_ENTRIES.c.id == bindparam("b_id"))
                .values(idx=bindparam("b_idx")),
                [{"b_id": row.id, "b_idx": head.size + i} for i, row in enumerate(queued)],
            )
            if completed:
                connection.execute(
                    insert(_NODES),
                    [{"level": n.level, "idx": n.index, "hash": h} for n, h in completed],
                )
            return len(queued)

    def sign(
        self, signer: Signer, now: dt.datetime, *, force: bool = False
    ) -> SignedCheckpoint | None:
        """Sign the tree head as a checkpoint if it grew since the last one (or ``force``)."""
        with self._engine.begin() as connection:
            head = self._head(connection, now)
            last = connection.execute(
                select(_CHECKPOINTS.c.size).order_by(_CHECKPOINTS.c.id.desc()).limit(1)
            ).scalar()
            if last is not None and last >= head.size and not force:
                return None
            checkpoint = Checkpoint(
                origin=head.origin,
                size=head.size,
                root=head.root,
                time=now.astimezone(dt.UTC).replace(microsecond=0),
            )
            signed = sign_checkpoint(checkpoint, signer)
            connection.execute(
                insert(_CHECKPOINTS).values(
                    size=head.size,
                    root=head.root,
                    signed_at=checkpoint.time,
                    kid=signed.kid,
                    jws=signed.jws,
                )
            )
            return signed

    # --- reading ------------------------------------------------------------------------------

    def head(self, now: dt.datetime | None = None) -> TreeHead:
        with self._engine.begin() as connection:
            return self._head(connection, now or dt.datetime.now(dt.UTC))

    def pending(self) -> int:
        with self._engine.connect() as connection:
            count = connection.execute(
                select(func.count()).select_from(_ENTRIES).where(_ENTRIES.c.idx.is_(None))
            ).scalar()
            return int(count or 0)

    def latest_checkpoint(self) -> str:
        """The newest signed checkpoint (JWS); ``NotFound`` before the first one."""
        with self._engine.connect() as connection:
            jws = connection.execute(
                select(_CHECKPOINTS.c.jws).order_by(_CHECKPOINTS.c.id.desc()).limit(1)
            ).scalar()
        if jws is None:
            raise NotFound("the log has no signed checkpoint yet")
        return str(jws)

    def checkpoint_of_size(self, size: int) -> str:
        """The first checkpoint signed at ``size``; ``NotFound`` if none was."""
        with self._engine.connect() as connection:
            jws = connection.execute(
                select(_CHECKPOINTS.c.jws)
                .where(_CHECKPOINTS.c.size == size)
                .order_by(_CHECKPOINTS.c.id)
                .limit(1)
            ).scalar()
        if jws is None:
            raise NotFound(f"no checkpoint was signed at tree size {size}")
        return str(jws)

    def first_checkpoint_covering(self, size: int) -> str | None:
        """The earliest checkpoint whose tree holds the first ``size`` leaves, if any."""
        with self._engine.connect() as connection:
            jws = connection.execute(
                select(_CHECKPOINTS.c.jws)
                .where(_CHECKPOINTS.c.size >= size)
                .order_by(_CHECKPOINTS.c.id)
                .limit(1)
            ).scalar()
        return str(jws) if jws is not None else None

    def checkpoints(self) -> list[str]:
        with self._engine.connect() as connection:
            rows = connection.execute(select(_CHECKPOINTS.c.jws).order_by(_CHECKPOINTS.c.id))
            return [str(jws) for (jws,) in rows]

    def entries(self, start: int, end: int) -> list[StoredEntry]:
        """Sequenced entries with ``start <= index < end``, in order."""
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(_ENTRIES)
                .where(_ENTRIES.c.idx >= start, _ENTRIES.c.idx < end)
                .order_by(_ENTRIES.c.idx)
            )
            return [_stored(row) for row in rows]

    def entries_of(
        self, agent_id: str, kinds: Iterable[str], *, first_seq: int = 0, last_seq: int = 2**62
    ) -> list[StoredEntry]:
        """Sequenced entries of an agent of ``kinds`` whose ``ref_seq`` is in the range (tokens
        and audit entries have none: they are all returned)."""
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(_ENTRIES)
                .where(
                    _ENTRIES.c.agent_id == agent_id,
                    _ENTRIES.c.kind.in_(list(kinds)),
                    _ENTRIES.c.idx.is_not(None),
                    (_ENTRIES.c.ref_seq.is_(None))
                    | _ENTRIES.c.ref_seq.between(first_seq, last_seq),
                )
                .order_by(_ENTRIES.c.idx)
            )
            return [_stored(row) for row in rows]

    def leaf_index(self, leaf_hash: bytes) -> int:
        """The index of the first sequenced entry with ``leaf_hash``; ``NotFound`` otherwise."""
        with self._engine.connect() as connection:
            index = connection.execute(
                select(func.min(_ENTRIES.c.idx)).where(
                    _ENTRIES.c.leaf_hash == leaf_hash, _ENTRIES.c.idx.is_not(None)
                )
            ).scalar()
        if index is None:
            raise NotFound("no sequenced entry has this leaf hash")
        return int(index)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return self.inclusion_proofs([index], size)[index]

    def inclusion_proofs(self, indices: Sequence[int], size: int) -> dict[int, list[bytes]]:
        """Audit paths of ``indices`` in the tree of ``size`` (at most the current size),
        every node fetched once."""
        self._check_size(size)
        ranges = {index: merkle.inclusion_ranges(index, size) for index in indices}
        with self._engine.connect() as connection:
            nodes = _fetch(connection, merkle.proof_nodes(r for rs in ranges.values() for r in rs))
        return {
            index: [merkle.range_hash(b, e, nodes) for b, e in leaf_ranges]
            for index, leaf_ranges in ranges.items()
        }

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        self._check_size(new)
        ranges = merkle.consistency_ranges(old, new)
        with self._engine.connect() as connection:
            return merkle.build_path(ranges, lambda ids: _fetch(connection, ids))

    def root_at(self, size: int) -> bytes:
        """The root of the tree's first ``size`` leaves, from perfect nodes."""
        self._check_size(size)
        if size == 0:
            return merkle.EMPTY_ROOT
        with self._engine.connect() as connection:
            nodes = _fetch(connection, merkle.frontier(size))
        return merkle.range_hash(0, size, nodes)

    # --- internals ----------------------------------------------------------------------------

    def _check_size(self, size: int) -> None:
        current = self.head().size
        if not 0 <= size <= current:
            raise NotFound(f"the log holds {current} entries, not {size}")

    def _head(self, connection: Connection, now: dt.datetime) -> TreeHead:
        self._ensure_state(now)
        row = connection.execute(select(_STATE).where(_STATE.c.id == 1)).one()
        if self._origin is not None and row.origin != self._origin:
            raise ConfigurationError(
                f"log_origin is {self._origin!r}, but this database's log is {row.origin!r} "
                "(a log cannot be renamed)"
            )
        return TreeHead(origin=row.origin, size=int(row.size), root=bytes(row.root))

    def _ensure_state(self, now: dt.datetime) -> None:
        """Create the log's state row once (in its own transaction: two processes creating it
        at once both end up with the one that committed first)."""
        if self._created:
            return
        origin = self._origin or f"geoattest/log/{secrets.token_hex(8)}"
        try:
            with self._engine.begin() as connection:
                exists = connection.execute(select(_STATE.c.id).where(_STATE.c.id == 1)).first()
                if exists is None:
                    connection.execute(
                        insert(_STATE).values(
                            id=1, origin=origin, size=0, root=merkle.EMPTY_ROOT, updated_at=now
                        )
                    )
                    log.info("transparency log %s created", origin)
        except IntegrityError:
            pass  # created by another process meanwhile
        self._created = True


def _fold_root(frontier_hashes: Sequence[bytes]) -> bytes:
    if not frontier_hashes:
        return merkle.EMPTY_ROOT
    root = frontier_hashes[-1]
    for left in reversed(frontier_hashes[:-1]):
        root = merkle.node_hash(left, root)
    return root


def _fetch(connection: Connection, ids: Iterable[NodeId]) -> Mapping[NodeId, bytes]:
    """The hashes of perfect nodes ``ids`` (leaves from the entries, others from the nodes)."""
    wanted = sorted(set(ids))
    found: dict[NodeId, bytes] = {}
    leaves = [n.index for n in wanted if n.level == 0]
    inner = [n for n in wanted if n.level > 0]
    for start in range(0, len(leaves), _FETCH_CHUNK):
        leaf_rows = connection.execute(
            select(_ENTRIES.c.idx, _ENTRIES.c.leaf_hash).where(
                _ENTRIES.c.idx.in_(leaves[start : start + _FETCH_CHUNK])
            )
        )
        found.update({NodeId(0, int(i)): bytes(h) for i, h in leaf_rows})
    for start in range(0, len(inner), _FETCH_CHUNK):
        chunk = inner[start : start + _FETCH_CHUNK]
        rows = connection.execute(
            select(_NODES.c.level, _NODES.c.idx, _NODES.c.hash).where(
                tuple_(_NODES.c.level, _NODES.c.idx).in_([(n.level, n.index) for n in chunk])
            )
        )
        found.update({NodeId(int(lv), int(i)): bytes(h) for lv, i, h in rows})
    missing = [n for n in wanted if n not in found]
    if missing:
        raise LogProofInvalid(
            f"the stored tree lacks {len(missing)} node(s), e.g. {missing[0]}: the log's "
            "tables were changed outside the sequencer"
        )
    return found


def _stored(row: Row[Any]) -> StoredEntry:
    return StoredEntry(
        index=int(row.idx),
        kind=str(row.kind),
        agent_id=row.agent_id,
        ref_seq=row.ref_seq,
        entry=entry_bytes(bytes(row.entry)),
        leaf_hash=bytes(row.leaf_hash),
        queued_at=as_utc(row.queued_at),
    )
