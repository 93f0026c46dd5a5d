"""Checking an agent's hash chain: consecutive records, each naming the digest of the one before.

The chain is a sequence of links in ``seq`` order: full records (their bytes are at hand, so their
digest is recomputed) and folds (a run of records past the hot window, of which only the digest
before the run and the digest of its last record are kept). ``check_chain`` reports every break:
a gap in the sequence numbers, a record or fold whose ``prev`` is not the digest of the link
before it, or a record of another agent. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from verifier.core.record import GENESIS, decode_record, record_digest


@dataclass(frozen=True, slots=True, kw_only=True)
class FoldLink:
    first_seq: int
    last_seq: int
    prev: bytes
    head: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordLink:
    canonical: bytes  # the record's canonical bytes (digest recomputed from them)


Link = RecordLink | FoldLink


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainReport:
    agent_id: str
    first_seq: int
    last_seq: int
    head: bytes  # digest of the last link
    breaks: tuple[str, ...]

    @property
    def intact(self) -> bool:
        return not self.breaks


def check_chain(
    agent_id: str, links: Sequence[Link], *, anchor: bytes | None = None
) -> ChainReport:
    """Check ``links`` (in order). ``anchor`` is the digest the first link must follow: GENESIS
    when the chain starts at seq 1; ``None`` accepts whatever the first link names (a window
    cut from a longer chain: its start is then vouched for only by the transparency log)."""
    breaks: list[str] = []
    expected_prev = anchor
    expected_seq: int | None = None
    first_seq = last_seq = 0
    for index, link in enumerate(links):
        if isinstance(link, FoldLink):
            seq, end, prev, digest = link.first_seq, link.last_seq, link.prev, link.head
        else:
            record = decode_record(link.canonical)
            if record.agent_id != agent_id:
                breaks.append(f"record seq {record.seq} belongs to agent {record.agent_id!r}")
            seq = end = record.seq
            prev, digest = record.prev, record_digest(link.canonical)
        if index == 0:
            first_seq = seq
            if anchor is None and seq == 1:
                expected_prev = GENESIS
        if expected_seq is not None and seq != expected_seq:
            breaks.append(f"seq {seq} follows seq {expected_seq - 1}: records missing or reordered")
        if expected_prev is not None and prev != expected_prev:
            breaks.append(f"seq {seq} does not name the digest of the record before it")
        expected_seq, expected_prev, last_seq = end + 1, digest, end
    return ChainReport(
        agent_id=agent_id,
        first_seq=first_seq,
        last_seq=last_seq,
        head=expected_prev or GENESIS,
        breaks=tuple(breaks),
    )
