"""``geoattest audit verify`` on a real verifier database (rounds run by the real runner, the
log signed with the real keyring): it holds when nothing was touched, and finds each kind of
tampering a database writer could try, one per test."""

from __future__ import annotations

import datetime as dt
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, delete, insert, select, text, update

from geoattest.cli import main
from geoattest.db import make_engine
from tests.support.log_keys import log_keyring
from tests.support.runner_stack import RunnerStack, runner_stack
from verifier.core import merkle
from verifier.signing.keyring import Keyring
from verifier.storage.log import TransparencyLog
from verifier.storage.log_queue import entry_bytes
from verifier.storage.models import CheckpointRow, LogEntryRow, RecordFold, RecordRow

pytestmark = pytest.mark.redis


@dataclass
class Audited:
    stack: RunnerStack
    engine: Engine
    log: TransparencyLog
    keys: Keyring
    key_file: Path

    def sign(self) -> None:
        now = dt.datetime.now(dt.UTC)
        while self.log.sequence(now):
            pass
        self.log.sign(self.keys.active(), now, force=True)

    def verify(self, *extra: str) -> Result:
        return CliRunner().invoke(
            main,
            [
                "audit",
                "verify",
                "--db",
                f"sqlite:///{self.stack.database}",
                "--verifier-key",
                str(self.key_file),
                *extra,
            ],
        )


@pytest.fixture
def audited(tmp_path: Path, redis_url: str) -> Iterator[Audited]:
    with runner_stack(tmp_path, redis_url, agents=1) as stack:
        agent_id = next(iter(stack.sims))
        for _ in range(4):
            stack.round(agent_id)
        stack.sims[agent_id].measure("/tmp/evil", content=b"payload")
        stack.round(agent_id)  # a failure (kept): it closes the gap 2..4
        stack.records.fold(now=dt.datetime.now(dt.UTC), hot_window=dt.timedelta(0))
        engine = make_engine(f"sqlite:///{stack.database}")
        keys = log_keyring(tmp_path / "keys")
        key_file = tmp_path / "log-keys.json"
        key_file.write_text(json.dumps(keys.jwks(dt.datetime.now(dt.UTC))))
        audited = Audited(
            stack=stack, engine=engine, log=TransparencyLog(engine), keys=keys, key_file=key_file
        )
        audited.sign()
        yield audited
        engine.dispose()


def _failed(result: Result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    for needle in needles:
        assert needle in result.output, result.output


def test_an_untouched_log_is_intact(audited: Audited) -> None:
    result = audited.verify()
    assert result.exit_code == 0, result.output
    assert "audit: intact" in result.output
    assert "records checked: 2; folds checked: 1" in result.output


def test_an_entry_whose_bytes_were_changed_is_found(audited: Audited) -> None:
    with audited.engine.begin() as connection:
        connection.execute(
            update(LogEntryRow).where(LogEntryRow.idx == 0).values(entry=b'{"forged":true}')
        )
    _failed(audited.verify(), "entry 0: its bytes do not hash to its leaf hash")


def test_an_entry_rewritten_with_its_leaf_hash_breaks_the_signed_checkpoints(
    audited: Audited,
) -> None:
    with audited.engine.begin() as connection:
        stored = connection.execute(select(LogEntryRow.entry).where(LogEntryRow.idx == 1)).scalar()
        assert stored is not None
        forged = entry_bytes(stored).replace(b'"seq":', b'"seq":1')
        connection.execute(
            update(LogEntryRow)
            .where(LogEntryRow.idx == 1)
            .values(entry=forged, leaf_hash=merkle.leaf_hash(forged))
        )
    _failed(audited.verify(), "no longer verify against the stored entries")


def test_a_deleted_entry_is_found(audited: Audited) -> None:
    with audited.engine.begin() as connection:
        connection.execute(delete(LogEntryRow).where(LogEntryRow.idx == 1))
    _failed(audited.verify(), "entries 1..1 are missing")


def test_a_kept_record_changed_after_it_was_logged_is_found(audited: Audited) -> None:
    with audited.engine.begin() as connection:
        row = connection.execute(
            select(RecordRow.id, RecordRow.body).where(RecordRow.seq == 5)
        ).one()
        body = zlib.decompress(row.body).replace(b'"integrity_failure"', b'"passed"')
        connection.execute(
            update(RecordRow).where(RecordRow.id == row.id).values(body=zlib.compress(body))
        )
    _failed(audited.verify(), "#5 was changed after it was logged")


def test_a_deleted_kept_record_is_found(audited: Audited) -> None:
    with audited.engine.begin() as connection:
        connection.execute(delete(RecordRow).where(RecordRow.seq == 5))
    _failed(audited.verify(), "#5 is in the log but was deleted")


def test_a_fold_whose_counts_were_changed_is_found(audited: Audited) -> None:
    with audited.engine.begin() as connection:
        connection.execute(update(RecordFold).values(outcomes='{"passed": 300}'))
    _failed(audited.verify(), "fold", "was changed after it was logged")


def test_a_kept_record_inserted_behind_the_verifiers_back_is_found(audited: Audited) -> None:
    with audited.engine.begin() as connection:
        row = connection.execute(select(RecordRow).where(RecordRow.seq == 5)).one()
        values = {c: getattr(row, c) for c in row._fields if c != "id"}
        connection.execute(insert(RecordRow).values({**values, "seq": 99, "round_id": "forged"}))
    _failed(audited.verify(), "#99 is not in the log")


def test_a_checkpoint_signed_by_another_key_is_found(audited: Audited, tmp_path: Path) -> None:
    other = log_keyring(tmp_path / "other-keys")
    TransparencyLog(audited.engine).sign(other.active(), dt.datetime.now(dt.UTC), force=True)
    _failed(audited.verify(), "not one of the given keys")


def test_a_log_cut_back_and_signed_again_fails_the_checkpoint_kept_outside(
    audited: Audited, tmp_path: Path
) -> None:
    saved = tmp_path / "checkpoint.jws"
    saved.write_text(audited.log.latest_checkpoint())
    size = audited.log.head().size
    with audited.engine.begin() as connection:  # the last entry and every checkpoint go
        connection.execute(delete(LogEntryRow).where(LogEntryRow.idx == size - 1))
        connection.execute(delete(CheckpointRow))
        connection.execute(
            text("UPDATE verifier_log_state SET size = :s, root = :r"),
            {"s": size - 1, "r": audited.log.root_at(size - 1)},
        )
    audited.sign()  # re-signed with the genuine key: the stored log alone looks fine
    assert audited.verify().exit_code == 0
    _failed(audited.verify("--checkpoint", str(saved)), f"signed at size {size}")


def test_unreadable_inputs_exit_3_and_usage_errors_4(audited: Audited, tmp_path: Path) -> None:
    (tmp_path / "bad-key.json").write_text("not a key")
    result = CliRunner().invoke(
        main,
        ["audit", "verify", "--db", f"sqlite:///{audited.stack.database}", "--verifier-key",
         str(tmp_path / "bad-key.json")],
    )  # fmt: skip
    assert result.exit_code == 3, result.output
    assert CliRunner().invoke(main, ["audit", "verify", "--nope"]).exit_code == 1
