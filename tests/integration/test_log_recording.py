"""What goes into the transparency log as the verifier runs: kept records with their commit,
folds as they are made (whole gaps between kept records, never extended), audit entries with
the operator's change; and everything in the log links to the chain it vouches for."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from geoattest.db import make_engine
from tests.support.runner_stack import RunnerStack, runner_stack
from verifier.core import merkle
from verifier.core.log_entry import FoldEntry, RecordEntry, decode_entry
from verifier.core.states import Outcome
from verifier.storage.config_changes import Audit
from verifier.storage.log import TransparencyLog
from verifier.storage.records import FoldSummary, RecordSummary

pytestmark = pytest.mark.redis


@pytest.fixture
def stack(tmp_path: Path, redis_url: str) -> Iterator[RunnerStack]:
    with runner_stack(tmp_path, redis_url) as running:
        yield running


@pytest.fixture
def log(stack: RunnerStack) -> Iterator[TransparencyLog]:
    engine = make_engine(f"sqlite:///{stack.database}")
    yield TransparencyLog(engine)
    engine.dispose()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _passes(stack: RunnerStack, agent_id: str, count: int) -> None:
    for _ in range(count):
        report = stack.round(agent_id)
        assert report is not None
        assert report.result.outcome is Outcome.PASSED


def _logged(log: TransparencyLog, agent_id: str) -> list[RecordEntry | FoldEntry]:
    while log.sequence(_now()):
        pass
    found = []
    for stored in log.entries_of(agent_id, ["record", "fold"]):
        entry = decode_entry(stored.entry)
        assert isinstance(entry, RecordEntry | FoldEntry)
        assert stored.leaf_hash == merkle.leaf_hash(stored.entry)
        found.append(entry)
    return found


def test_kept_records_are_queued_with_their_commit_and_hot_ones_are_not(
    stack: RunnerStack, log: TransparencyLog
) -> None:
    agent_id = next(iter(stack.sims))
    _passes(stack, agent_id, 4)  # the first is a transition (kept), the others are not
    entries = _logged(log, agent_id)
    assert [(type(e), getattr(e, "seq", None)) for e in entries] == [(RecordEntry, 1)]
    first = stack.records.page(agent_id)[0]
    assert isinstance(first, RecordSummary)
    assert entries[0] == RecordEntry(
        agent_id=agent_id, seq=1, digest=first.digest, ended_at=first.ended_at
    )


def test_a_gap_between_kept_records_folds_once_into_one_logged_fold(
    stack: RunnerStack, log: TransparencyLog
) -> None:
    agent_id = next(iter(stack.sims))
    _passes(stack, agent_id, 5)  # seq 1 kept, 2..5 hot
    stack.sims[agent_id].measure("/tmp/evil", content=b"payload")
    stack.round(agent_id)  # seq 6: a failure, kept: it closes the gap 2..5
    assert stack.records.fold(now=_now(), hot_window=dt.timedelta(0)) == 4
    assert stack.records.fold(now=_now(), hot_window=dt.timedelta(0)) == 0
    entries = _logged(log, agent_id)
    assert [type(e) for e in entries] == [RecordEntry, RecordEntry, FoldEntry]
    fold = entries[2]
    assert isinstance(fold, FoldEntry)
    assert (fold.first_seq, fold.last_seq, dict(fold.outcomes)) == (2, 5, {"passed": 4})
    items = stack.records.page(agent_id)
    stored_fold = next(item for item in items if isinstance(item, FoldSummary))
    assert (fold.prev, fold.head) == (stored_fold.prev, stored_fold.head)
    kept = {item.seq: item for item in items if isinstance(item, RecordSummary)}
    assert fold.prev == kept[1].digest  # the fold links the kept records on both sides
    assert kept[6].prev == fold.head
    assert 0 < fold.max_gap_ms < 10_000


def test_a_run_whose_successor_is_still_hot_waits_to_fold_whole(
    stack: RunnerStack, log: TransparencyLog
) -> None:
    agent_id = next(iter(stack.sims))
    _passes(stack, agent_id, 4)
    third = stack.records.page(agent_id)[2]
    assert isinstance(third, RecordSummary)
    # The cutoff falls between seq 3 and seq 4: seq 2..3 are old, but seq 4 (hot) continues them.
    window = _now() - third.ended_at - dt.timedelta(milliseconds=1)
    assert stack.records.fold(now=_now(), hot_window=window) == 0
    assert [type(e) for e in _logged(log, agent_id)] == [RecordEntry]


def test_an_agent_that_stopped_has_its_last_run_folded_after_two_hot_windows(
    stack: RunnerStack, log: TransparencyLog
) -> None:
    agent_id = next(iter(stack.sims))
    _passes(stack, agent_id, 3)
    later = _now() + dt.timedelta(hours=2, seconds=1)
    assert stack.records.fold(now=later, hot_window=dt.timedelta(hours=1)) == 2
    fold = _logged(log, agent_id)[-1]
    assert isinstance(fold, FoldEntry)
    assert (fold.first_seq, fold.last_seq) == (2, 3)


def test_configuration_changes_are_audit_entries_of_their_transaction(
    stack: RunnerStack, log: TransparencyLog
) -> None:
    agent_id = next(iter(stack.sims))
    audit = Audit(actor="operator@test", at=_now())
    stack.store.set_policy_of(agent_id, "edge", audit=audit)
    stack.store.remove_agent(agent_id, audit=audit)
    while log.sequence(_now()):
        pass
    entries = [decode_entry(e.entry) for e in log.entries_of(agent_id, ["audit"])]
    assert [getattr(e, "action", None) for e in entries] == ["agent_policy_set", "agent_removed"]
