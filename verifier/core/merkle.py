"""The transparency log's Merkle tree math: RFC 6962 hashing, RFC 9162 proofs and their checks.

Hashing has domain separation (RFC 6962 section 2.1): a leaf is ``SHA-256(0x00 ‖ entry)``, an
interior node ``SHA-256(0x01 ‖ left ‖ right)``, so no leaf can pose as a node. The tree of
``n`` leaves splits at the largest power of two below ``n``; the empty tree's hash is
``SHA-256("")``.

Proofs are built from *perfect* subtrees only (``NodeId``: a level and an index; the node at
level ``L``, index ``i`` covers leaves ``[i·2^L, (i+1)·2^L)``), which a store keeps as they
complete. ``inclusion_ranges`` / ``consistency_ranges`` name the leaf ranges whose hashes make
a proof, ``nodes_of`` the perfect nodes each range is made of, and ``range_hash`` folds them:
so a store fetches every node a proof needs in one query. ``verify_inclusion`` and
``verify_consistency`` are RFC 9162 sections 2.1.3.2 and 2.1.4.2, word for word; they raise
``LogProofInvalid`` naming what does not hold. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from geoattest.errors import LogProofInvalid

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
_LEAF = b"\x00"
_NODE = b"\x01"


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(_LEAF + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE + left + right).digest()


@dataclass(frozen=True, slots=True, order=True)
class NodeId:
    """A perfect subtree: ``level`` 0 is a leaf; it covers ``2**level`` leaves from ``begin``."""

    level: int
    index: int

    @property
    def begin(self) -> int:
        return self.index << self.level

    @property
    def end(self) -> int:
        return (self.index + 1) << self.level


LeafRange = tuple[int, int]  # [begin, end)


def _split(size: int) -> int:
    """The largest power of two below ``size`` (``size`` > 1)."""
    return 1 << ((size - 1).bit_length() - 1)


def root_from_leaves(leaves: Sequence[bytes]) -> bytes:
    """MTH (RFC 6962 section 2.1) of ``leaves`` (leaf hashes), computed directly: the reference
    that stores and proofs are tested against."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    while len(level) > 1:  # pairing left to right and carrying an odd last node up is MTH
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def nodes_of(begin: int, end: int) -> list[NodeId]:
    """The perfect subtrees a left-aligned range ``[begin, end)`` is made of, largest first (the
    ranges of RFC 6962 proofs always are: ``begin`` is a multiple of a power of two that is at
    least ``end - begin``)."""
    ids = []
    start = begin
    for level in range((end - begin).bit_length() - 1, -1, -1):
        if (end - begin) >> level & 1:
            ids.append(NodeId(level, start >> level))
            start += 1 << level
    return ids


def range_hash(begin: int, end: int, nodes: Mapping[NodeId, bytes]) -> bytes:
    """MTH of leaves ``[begin, end)`` from the perfect nodes ``nodes_of`` names."""
    hashes = [nodes[node] for node in nodes_of(begin, end)]
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def inclusion_ranges(index: int, size: int) -> list[LeafRange]:
    """The ranges whose hashes are the audit path of leaf ``index`` in a tree of ``size``
    (RFC 6962 PATH), from the leaf's sibling up."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    ranges: list[LeafRange] = []
    begin, end = 0, size
    while end - begin > 1:
        k = _split(end - begin)
        if index < begin + k:
            ranges.append((begin + k, end))
            end = begin + k
        else:
            ranges.append((begin, begin + k))
            begin += k
    ranges.reverse()
    return ranges


def consistency_ranges(old: int, new: int) -> list[LeafRange]:
    """The ranges whose hashes prove the tree of ``old`` leaves a prefix of the tree of ``new``
    (RFC 6962 PROOF / SUBPROOF), in proof order."""
    if not 0 < old <= new:
        raise ValueError(f"no consistency proof from size {old} to {new}")
    ranges: list[LeafRange] = []
    begin, end, m, whole = 0, new, old, True
    while m != end - begin:
        k = _split(end - begin)
        if m <= k:
            ranges.append((begin + k, end))
            end = begin + k
        else:
            ranges.append((begin, begin + k))
            begin, m, whole = begin + k, m - k, False
    if not whole:
        ranges.append((begin, end))
    ranges.reverse()
    return ranges


def proof_nodes(ranges: Iterable[LeafRange]) -> set[NodeId]:
    return {node for begin, end in ranges for node in nodes_of(begin, end)}


def build_path(
    ranges: Sequence[LeafRange], fetch: Callable[[set[NodeId]], Mapping[NodeId, bytes]]
) -> list[bytes]:
    """The proof for ``ranges``, with every perfect node fetched in one call of ``fetch``."""
    nodes = fetch(proof_nodes(ranges))
    return [range_hash(begin, end, nodes) for begin, end in ranges]


def frontier(size: int) -> list[NodeId]:
    """The perfect subtrees the whole tree of ``size`` leaves is made of, largest first: all a
    store needs to append a leaf or compute the root."""
    return nodes_of(0, size)


def verify_inclusion(
    index: int, size: int, leaf: bytes, path: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 section 2.1.3.2: ``path`` proves ``leaf`` (a leaf hash) at ``index`` in the
    tree of ``size`` leaves whose root is ``root``. Raises ``LogProofInvalid``."""
    if not 0 <= index < size:
        raise LogProofInvalid(f"leaf index {index} is not below the tree size {size}")
    _hash_sizes(leaf, root, *path)
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise LogProofInvalid("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise LogProofInvalid("inclusion proof is shorter than the tree is deep")
    if r != root:
        raise LogProofInvalid(f"leaf {index} does not lead to the root of the tree of {size}")


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, path: Sequence[bytes]
) -> None:
    """RFC 9162 section 2.1.4.2: ``path`` proves the tree of ``old`` leaves (``old_root``) a
    prefix of the tree of ``new`` leaves (``new_root``). Raises ``LogProofInvalid``."""
    _hash_sizes(old_root, new_root, *path)
    if old == 0 or old > new:
        raise LogProofInvalid(f"no consistency between tree sizes {old} and {new}")
    if old == new:
        if path:
            raise LogProofInvalid("a consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise LogProofInvalid(f"two different roots for the tree of {old}")
        return
    if not path:
        raise LogProofInvalid("empty consistency proof between different sizes")
    proof = list(path)
    if old & (old - 1) == 0:  # the old tree is a perfect subtree: its root starts the walk
        proof.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            raise LogProofInvalid("consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise LogProofInvalid("consistency proof is shorter than the tree is deep")
    if fr != old_root:
        raise LogProofInvalid(f"consistency proof does not reproduce the root of size {old}")
    if sr != new_root:
        raise LogProofInvalid(f"consistency proof does not reproduce the root of size {new}")


def _hash_sizes(*hashes: bytes) -> None:
    for value in hashes:
        if len(value) != HASH_SIZE:
            raise LogProofInvalid(f"a hash of {len(value)} bytes where SHA-256 has {HASH_SIZE}")
