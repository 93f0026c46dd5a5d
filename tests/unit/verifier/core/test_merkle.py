"""The Merkle tree math against the RFC 6962 known answers of transparency-dev/merkle (copied
into ``tests/vectors/merkle``), and proofs built from perfect nodes against the reference root."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geoattest.errors import LogProofInvalid
from tests.paths import vector
from verifier.core.merkle import (
    EMPTY_ROOT,
    NodeId,
    build_path,
    consistency_ranges,
    frontier,
    inclusion_ranges,
    leaf_hash,
    node_hash,
    range_hash,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)

TREE = json.loads(vector("merkle/rfc6962_tree.json").read_text())
LEAVES = [bytes.fromhex(h) for h in TREE["leaf_inputs_hex"]]


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value) if value else b""


def _cases(kind: str) -> list[Path]:
    return sorted(vector(f"merkle/{kind}").rglob("*.json"))


def test_hashing_known_answers() -> None:
    hasher = TREE["hasher"]
    assert EMPTY_ROOT.hex() == hasher["empty_tree"]
    assert leaf_hash(b"").hex() == hasher["empty_leaf"]
    assert leaf_hash(b"L123456").hex() == hasher["leaf_L123456"]
    assert node_hash(b"N123", b"N456").hex() == hasher["node_N123_N456"]


def test_domain_separation_keeps_a_leaf_from_posing_as_a_node() -> None:
    left, right = leaf_hash(b"Hello"), leaf_hash(b"World")
    assert node_hash(left, right) != leaf_hash(left + right)
    assert node_hash(left, right) != node_hash(right, left)


def test_roots_of_every_size_of_the_reference_tree() -> None:
    hashes = [leaf_hash(leaf) for leaf in LEAVES]
    for size, root in enumerate(TREE["root_hashes_hex_by_size"]):
        assert root_from_leaves(hashes[:size]).hex() == root, size


def test_perfect_nodes_of_the_reference_tree() -> None:
    nodes = _reference_nodes()
    for level, row in enumerate(TREE["node_hashes_hex"]):
        for index, expected in enumerate(row):
            assert nodes[NodeId(level, index)].hex() == expected


def _case_id(path: Path) -> str:
    return str(path.relative_to(path.parents[2]))


@pytest.mark.parametrize("path", _cases("inclusion"), ids=_case_id)
def test_inclusion_vectors(path: Path) -> None:
    case = json.loads(path.read_text())
    proof = [_b64(p) for p in case["proof"] or []]
    args = (case["leafIdx"], case["treeSize"], _b64(case["leafHash"]), proof, _b64(case["root"]))
    if case["wantErr"]:
        with pytest.raises(LogProofInvalid):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", _cases("consistency"), ids=_case_id)
def test_consistency_vectors(path: Path) -> None:
    case = json.loads(path.read_text())
    proof = [_b64(p) for p in case["proof"] or []]
    args = (case["size1"], case["size2"], _b64(case["root1"]), _b64(case["root2"]), proof)
    # Stricter than upstream: a "hash" that is not 32 bytes (the vectors' "don't care" roots
    # for equal sizes) is refused, whatever else the case says.
    malformed = any(len(h) != 32 for h in (args[2], args[3], *proof))
    if case["wantErr"] or malformed:
        with pytest.raises(LogProofInvalid):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_built_proofs_equal_the_vectors_happy_paths() -> None:
    nodes = _reference_nodes()
    for path in _cases("inclusion"):
        case = json.loads(path.read_text())
        if case["wantErr"] or case["treeSize"] > len(LEAVES) or path.parent.name == "additional":
            continue
        ranges = inclusion_ranges(case["leafIdx"], case["treeSize"])
        built = build_path(ranges, lambda ids: {i: nodes[i] for i in ids})
        assert built == [_b64(p) for p in case["proof"] or []], path
    for path in _cases("consistency"):
        case = json.loads(path.read_text())
        if case["wantErr"] or case["size2"] > len(LEAVES):
            continue
        ranges = consistency_ranges(case["size1"], case["size2"])
        built = build_path(ranges, lambda ids: {i: nodes[i] for i in ids})
        assert built == [_b64(p) for p in case["proof"] or []], path


@given(st.integers(1, 300), st.data())
def test_every_built_proof_verifies_against_the_reference_root(
    size: int, data: st.DataObject
) -> None:
    hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    nodes = _nodes_of(hashes)
    root = root_from_leaves(hashes)
    assert range_hash(0, size, nodes) == root
    assert range_hash(0, size, {n: nodes[n] for n in frontier(size)}) == root
    index = data.draw(st.integers(0, size - 1))
    path = build_path(inclusion_ranges(index, size), lambda ids: {i: nodes[i] for i in ids})
    verify_inclusion(index, size, hashes[index], path, root)
    with pytest.raises(LogProofInvalid):
        verify_inclusion(index, size, leaf_hash(b"another entry"), path, root)
    old = data.draw(st.integers(1, size))
    proof = build_path(consistency_ranges(old, size), lambda ids: {i: nodes[i] for i in ids})
    verify_consistency(old, size, root_from_leaves(hashes[:old]), root, proof)
    if old < size:
        forked = [*hashes[: old - 1], leaf_hash(b"rewritten"), *hashes[old:]]
        with pytest.raises(LogProofInvalid):
            verify_consistency(old, size, root_from_leaves(forked[:old]), root, proof)


def test_ranges_refuse_leaves_outside_the_tree() -> None:
    with pytest.raises(ValueError, match="not in a tree"):
        inclusion_ranges(5, 5)
    with pytest.raises(ValueError, match="no consistency"):
        consistency_ranges(0, 5)


def _reference_nodes() -> dict[NodeId, bytes]:
    return _nodes_of([leaf_hash(leaf) for leaf in LEAVES])


def _nodes_of(hashes: list[bytes]) -> dict[NodeId, bytes]:
    """Every perfect node of the tree over ``hashes``, by pairing levels (independent of the
    proof code under test)."""
    nodes = {NodeId(0, i): h for i, h in enumerate(hashes)}
    level, row = 0, hashes
    while len(row) > 1:
        row = [node_hash(row[i], row[i + 1]) for i in range(0, len(row) - 1, 2)]
        level += 1
        nodes.update({NodeId(level, i): h for i, h in enumerate(row)})
    return nodes
