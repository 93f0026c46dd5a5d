"""The transparency log's queue: entries written (``idx`` None) inside the transaction that
makes them, so a kept record and its entry, a fold and its entry, an operator's change and its
audit entry commit together; the sequencer (``verifier.storage.log``) gives them their place in
the tree later. Nothing on a round's hot path waits for the tree."""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Sequence

from sqlalchemy import Connection, Table, insert
from sqlalchemy.orm import Session

from verifier.core import merkle
from verifier.core.log_entry import FoldEntry, LogEntry, RecordEntry, encode_entry, entry_kind
from verifier.storage.models import LogEntryRow

_ENTRIES: Table = LogEntryRow.__table__  # type: ignore[assignment]  # a declarative Table


def entry_row(entry: LogEntry, queued_at: dt.datetime) -> dict[str, object]:
    """The queue row of ``entry`` (for ``insert(LogEntryRow)`` in the caller's transaction)."""
    data = encode_entry(entry)
    kind = entry_kind(entry)
    ref_seq = None
    if isinstance(entry, RecordEntry):
        ref_seq = entry.seq
    elif isinstance(entry, FoldEntry):
        ref_seq = entry.first_seq
    return {
        "idx": None,
        "kind": kind.value,
        "agent_id": entry.agent_id,
        "ref_seq": ref_seq,
        "entry": zlib.compress(data, 9),  # small JSON: a third smaller (ADR 10 has the bytes)
        "leaf_hash": merkle.leaf_hash(data),
        "queued_at": queued_at,
    }


def entry_bytes(stored: bytes) -> bytes:
    """An entry's canonical bytes from its stored column (zlib; canonical JSON starts with
    ``{``, a zlib stream never does)."""
    return stored if stored[:1] == b"{" else zlib.decompress(stored)


def enqueue(
    target: Connection | Session, entries: Sequence[LogEntry], queued_at: dt.datetime
) -> None:
    """Queue ``entries`` in the caller's transaction (they commit, or not, with it)."""
    if entries:
        target.execute(insert(_ENTRIES), [entry_row(e, queued_at) for e in entries])
