"""The transparency log on a real SQLite file: sequencing, the stored tree against the reference
root, proofs that verify, checkpoints signed with the real log keyring, and tampering seen."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text, update
from sqlalchemy.exc import OperationalError

from geoattest.db import make_engine, migrate
from geoattest.errors import ConfigurationError, Conflict, LogProofInvalid, NotFound
from tests.support.log_keys import log_keyring, public_keys
from verifier.core import merkle
from verifier.core.checkpoint import verify_checkpoint
from verifier.core.log_entry import AuditAction, AuditEntry, RecordEntry
from verifier.storage.log import TransparencyLog
from verifier.storage.models import LogEntryRow

NOW = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'verifier.sqlite'}")
    migrate(engine)
    yield engine
    engine.dispose()


def _entries(count: int, start: int = 0) -> list[RecordEntry]:
    return [
        RecordEntry(
            agent_id="edge-1", seq=n + 1, digest=merkle.leaf_hash(str(n).encode()), ended_at=NOW
        )
        for n in range(start, start + count)
    ]


def _leaves(engine: Engine) -> list[bytes]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT leaf_hash FROM verifier_log_entries WHERE idx IS NOT NULL ORDER BY idx")
        )
        return [bytes(h) for (h,) in rows]


def test_sequenced_entries_make_the_reference_tree(engine: Engine) -> None:
    log = TransparencyLog(engine)
    total = 0
    for batch in (1, 2, 5, 13, 1, 64, 7):  # sizes that cross many perfect-subtree boundaries
        log.append(_entries(batch, total), NOW)
        assert log.pending() == batch
        assert log.sequence(NOW) == batch
        total += batch
        head = log.head()
        assert head.size == total
        assert head.root == merkle.root_from_leaves(_leaves(engine))
        assert log.root_at(total) == head.root
    assert log.sequence(NOW) == 0


def test_inclusion_and_consistency_proofs_verify(engine: Engine) -> None:
    log = TransparencyLog(engine)
    log.append(_entries(37), NOW)
    log.sequence(NOW)
    leaves = _leaves(engine)
    root = log.head().root
    proofs = log.inclusion_proofs(range(37), 37)
    for index, path in proofs.items():
        merkle.verify_inclusion(index, 37, leaves[index], path, root)
    for old in (1, 8, 20, 37):
        proof = log.consistency_proof(old, 37)
        merkle.verify_consistency(old, 37, merkle.root_from_leaves(leaves[:old]), root, proof)
    for index in (0, 19, 36):  # and in an older tree
        path = log.inclusion_proof(index, 37)
        assert path == proofs[index]
    with pytest.raises(NotFound, match="holds 37"):
        log.inclusion_proof(0, 38)


def test_checkpoints_are_signed_when_the_tree_grew_and_verify_with_the_log_keys(
    engine: Engine, tmp_path: Path
) -> None:
    ring = log_keyring(tmp_path / "keys")
    log = TransparencyLog(engine, origin="geoattest/log/test")
    first = log.sign(ring.active(), NOW)
    assert first is not None
    assert first.checkpoint.size == 0
    assert log.sign(ring.active(), NOW) is None  # nothing new: nothing signed
    log.append(_entries(3), NOW)
    log.sequence(NOW)
    signed = log.sign(ring.active(), NOW + dt.timedelta(minutes=1))
    assert signed is not None
    checked = verify_checkpoint(
        log.latest_checkpoint(), public_keys(ring), origin="geoattest/log/test"
    )
    assert checked.checkpoint.size == 3
    assert checked.checkpoint.root == log.head().root
    assert log.checkpoint_of_size(3) == signed.jws
    assert log.first_checkpoint_covering(2) == signed.jws
    assert log.checkpoints() == [first.jws, signed.jws]


def test_a_log_cannot_be_renamed(engine: Engine) -> None:
    TransparencyLog(engine, origin="geoattest/log/a").head()
    with pytest.raises(ConfigurationError, match="cannot be renamed"):
        TransparencyLog(engine, origin="geoattest/log/b").head()
    assert TransparencyLog(engine).head().origin == "geoattest/log/a"


def test_a_generated_origin_is_kept_for_the_database(engine: Engine) -> None:
    origin = TransparencyLog(engine).head().origin
    assert origin.startswith("geoattest/log/")
    assert TransparencyLog(engine).head().origin == origin


def test_an_entry_changed_in_place_no_longer_leads_to_the_signed_root(
    engine: Engine, tmp_path: Path
) -> None:
    ring = log_keyring(tmp_path / "keys")
    log = TransparencyLog(engine)
    log.append(_entries(9), NOW)
    log.sequence(NOW)
    signed = log.sign(ring.active(), NOW)
    assert signed is not None
    with engine.begin() as connection:
        connection.execute(
            update(LogEntryRow).where(LogEntryRow.idx == 4).values(leaf_hash=merkle.leaf_hash(b"x"))
        )
    leaves = _leaves(engine)
    assert merkle.root_from_leaves(leaves) != signed.checkpoint.root
    with pytest.raises(LogProofInvalid):
        merkle.verify_inclusion(4, 9, leaves[4], log.inclusion_proof(4, 9), signed.checkpoint.root)


def test_a_removed_interior_node_is_reported_not_guessed(engine: Engine) -> None:
    log = TransparencyLog(engine)
    log.append(_entries(8), NOW)
    log.sequence(NOW)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM verifier_log_nodes WHERE level = 1 AND idx = 1"))
    with pytest.raises(LogProofInvalid, match="lacks"):
        log.inclusion_proof(0, 8)


def test_audit_entries_are_sequenced_with_the_records(engine: Engine) -> None:
    log = TransparencyLog(engine)
    log.append(_entries(2), NOW)
    log.append([AuditEntry(action=AuditAction.POLICY_PUT, at=NOW, actor="v", subject="edge")], NOW)
    log.sequence(NOW)
    kinds = [entry.kind for entry in log.entries(0, 10)]
    assert kinds == ["record", "record", "audit"]
    assert [e.ref_seq for e in log.entries_of("edge-1", ["record"], first_seq=2)] == [2]


def test_concurrent_sequencers_never_fork_the_tree(engine: Engine) -> None:
    log = TransparencyLog(engine)
    errors: list[Exception] = []

    def work(offset: int) -> None:
        for round_ in range(20):
            log.append(_entries(3, offset + round_ * 3), NOW)
            try:
                log.sequence(NOW)
            except (Conflict, OperationalError) as e:  # the other one won: retried next time
                errors.append(e)

    threads = [threading.Thread(target=work, args=(n * 1000,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    while log.sequence(NOW):
        pass
    leaves = _leaves(engine)
    assert len(leaves) == 120 == log.head().size
    assert log.head().root == merkle.root_from_leaves(leaves)
