"""Auditing a whole transparency log, pure: every signed checkpoint against the entries as
stored, and the entries against what they describe.

``CompactTree`` appends leaf hashes keeping only the perfect subtrees of the right edge, so the
root at every checkpoint size comes out of one pass over the entries. ``audit_entries`` runs
that pass: it reports an entry whose stored leaf hash is not the hash of its bytes, a gap in the
indices (an entry deleted), and each checkpoint whose root the entries no longer reproduce (so
a changed entry is placed between the last checkpoint that still holds and the first that does
not). Checkpoint signatures are checked by the caller (``verifier.core.checkpoint``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from verifier.core.checkpoint import Checkpoint
from verifier.core.merkle import EMPTY_ROOT, leaf_hash, node_hash


class CompactTree:
    """A Merkle tree that keeps only its right edge: ``append`` a leaf hash, read ``root``."""

    def __init__(self) -> None:
        self.size = 0
        self._edge: list[tuple[int, bytes]] = []  # (level, hash), largest first

    def append(self, leaf: bytes) -> None:
        level, value = 0, leaf
        while self._edge and self._edge[-1][0] == level:
            value = node_hash(self._edge.pop()[1], value)
            level += 1
        self._edge.append((level, value))
        self.size += 1

    @property
    def root(self) -> bytes:
        if not self._edge:
            return EMPTY_ROOT
        root = self._edge[-1][1]
        for _, left in reversed(self._edge[:-1]):
            root = node_hash(left, root)
        return root


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredLeaf:
    index: int
    entry: bytes
    leaf_hash: bytes  # as stored


@dataclass(slots=True)
class EntriesAudit:
    entries: int = 0
    problems: list[str] = field(default_factory=list)
    checkpoints_held: int = 0
    broken_checkpoints: list[int] = field(default_factory=list)  # sizes whose root fails


def audit_entries(leaves: Iterable[StoredLeaf], checkpoints: Sequence[Checkpoint]) -> EntriesAudit:
    """Replay ``leaves`` (in index order) and compare with ``checkpoints`` (verified)."""
    audit = EntriesAudit()
    wanted = sorted({c.size for c in checkpoints})
    roots = {c.size: c.root for c in checkpoints}
    tree = CompactTree()
    pending = iter(wanted)
    next_size = next(pending, None)

    def reached() -> None:
        nonlocal next_size
        while next_size is not None and tree.size == next_size:
            if tree.root == roots[next_size]:
                audit.checkpoints_held += 1
            else:
                audit.broken_checkpoints.append(next_size)
            next_size = next(pending, None)

    reached()
    for leaf in leaves:
        if leaf.index != tree.size:
            audit.problems.append(
                f"entries {tree.size}..{leaf.index - 1} are missing (deleted from the log)"
            )
            while tree.size < leaf.index:  # keep counting: later checkpoints fail on their own
                tree.append(bytes(32))
                reached()
        recomputed = leaf_hash(leaf.entry)
        if recomputed != leaf.leaf_hash:
            audit.problems.append(f"entry {leaf.index}: its bytes do not hash to its leaf hash")
        tree.append(recomputed)
        audit.entries += 1
        reached()
    if next_size is not None:
        audit.problems.append(
            f"the log holds {tree.size} entries, but a checkpoint was signed at size {next_size}"
        )
        audit.broken_checkpoints.extend(s for s in wanted if s > tree.size)
    if audit.broken_checkpoints:
        first = min(audit.broken_checkpoints)
        held = [s for s in wanted if s < first and s not in audit.broken_checkpoints]
        after = max(held) if held else 0
        audit.problems.append(
            f"{len(audit.broken_checkpoints)} signed checkpoint(s) no longer verify against "
            f"the stored entries: an entry in {after}..{first - 1} was changed or removed"
        )
    return audit
