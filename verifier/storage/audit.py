"""``geoattest audit verify``: the transparency log and what it vouches for, as stored, against
its signed checkpoints (and, when given, a checkpoint kept elsewhere).

Checked, in order: every stored checkpoint's signature with the log keys given (the published
JWKS or the keyring) and its origin; every entry's bytes against its leaf hash and the roots of
all checkpoints (``verifier.core.log_audit``); a checkpoint kept outside the database against
the stored tree (a log cut back and re-signed fails it); then what the entries describe: each
logged kept record's stored body must still hash to the logged digest, each logged fold must
still be stored as logged, and a kept record made since the log began must have its entry. A
record or fold gone after the retention period is expired, not missing.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Connection, Engine, select

from geoattest.db import as_utc
from geoattest.errors import GeoattestError
from verifier.core.checkpoint import SignedCheckpoint, verify_checkpoint
from verifier.core.log_audit import StoredLeaf, audit_entries
from verifier.core.log_entry import FoldEntry, RecordEntry, decode_entry
from verifier.core.record import record_digest
from verifier.storage.log_queue import entry_bytes
from verifier.storage.models import CheckpointRow, LogEntryRow, RecordFold, RecordRow
from verifier.storage.records import stored_body

_PAGE = 5000


@dataclass(slots=True)
class AuditReport:
    origin: str | None = None
    entries: int = 0
    checkpoints: int = 0
    latest_size: int = 0
    records_checked: int = 0
    folds_checked: int = 0
    expired: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems


def audit_log(
    engine: Engine,
    keys: Mapping[str, ec.EllipticCurvePublicKey],
    *,
    now: dt.datetime,
    retention: dt.timedelta,
    external: str | None = None,
) -> AuditReport:
    """Audit the log in ``engine``'s database (see the module docstring)."""
    report = AuditReport()
    signed = _checkpoints(engine, keys, report)
    if signed:
        report.origin = signed[-1].checkpoint.origin
        report.latest_size = signed[-1].checkpoint.size
    checkpoints = [s.checkpoint for s in signed]
    if external is not None:
        try:
            outside = verify_checkpoint(external, keys, origin=report.origin)
            checkpoints.append(outside.checkpoint)
            report.notes.append(
                f"checkpoint kept outside: size {outside.checkpoint.size}, signed "
                f"{outside.checkpoint.time:%Y-%m-%d %H:%M:%S}Z"
            )
        except GeoattestError as e:
            report.problems.append(f"the checkpoint given: {e.message}")
    entries = audit_entries(_leaves(engine), checkpoints)
    report.entries = entries.entries
    report.problems += entries.problems
    if external is not None and checkpoints and checkpoints[-1].size in entries.broken_checkpoints:
        report.problems.append("the checkpoint kept outside does not match the stored log")
    _check_described(engine, report, now - retention)
    return report


def _checkpoints(
    engine: Engine, keys: Mapping[str, ec.EllipticCurvePublicKey], report: AuditReport
) -> list[SignedCheckpoint]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(CheckpointRow.id, CheckpointRow.jws).order_by(CheckpointRow.id)
        ).all()
    verified: list[SignedCheckpoint] = []
    origin = None
    for row in rows:
        try:
            checkpoint = verify_checkpoint(row.jws, keys, origin=origin)
        except GeoattestError as e:
            report.problems.append(f"stored checkpoint #{row.id}: {e.message}")
            continue
        if verified and checkpoint.checkpoint.size < verified[-1].checkpoint.size:
            report.problems.append(f"stored checkpoint #{row.id} is of a smaller tree than before")
        origin = checkpoint.checkpoint.origin
        verified.append(checkpoint)
    report.checkpoints = len(verified)
    if not rows:
        report.problems.append("the log has no signed checkpoint")
    return verified


def _leaves(engine: Engine) -> Iterator[StoredLeaf]:
    after = -1
    while True:
        with engine.connect() as connection:
            rows = connection.execute(
                select(LogEntryRow.idx, LogEntryRow.entry, LogEntryRow.leaf_hash)
                .where(LogEntryRow.idx > after)
                .order_by(LogEntryRow.idx)
                .limit(_PAGE)
            ).all()
        if not rows:
            return
        for index, entry, leaf in rows:
            after = int(index or 0)  # never None: the query asks for idx > after
            yield StoredLeaf(index=after, entry=entry_bytes(bytes(entry)), leaf_hash=bytes(leaf))


def _check_described(engine: Engine, report: AuditReport, expired_before: dt.datetime) -> None:
    logged_records: set[tuple[str, int]] = set()
    first_logged: dt.datetime | None = None
    with engine.connect() as connection:
        for data, queued_at in connection.execute(
            select(LogEntryRow.entry, LogEntryRow.queued_at).where(
                LogEntryRow.kind.in_(["record", "fold"])
            )
        ):
            queued = as_utc(queued_at)
            first_logged = queued if first_logged is None else min(first_logged, queued)
            try:
                entry = decode_entry(entry_bytes(bytes(data)))
            except GeoattestError as e:
                report.problems.append(f"a log entry does not parse: {e.message}")
                continue
            if isinstance(entry, RecordEntry):
                logged_records.add((entry.agent_id, entry.seq))
                _check_record(connection, entry, report, expired_before)
            elif isinstance(entry, FoldEntry):
                _check_fold(connection, entry, report, expired_before)
        if first_logged is None:
            return
        unlogged = [
            (agent_id, seq)
            for agent_id, seq, ended_at in connection.execute(
                select(RecordRow.agent_id, RecordRow.seq, RecordRow.ended_at).where(
                    RecordRow.kept.is_(True)
                )
            )
            if (agent_id, seq) not in logged_records and as_utc(ended_at) >= first_logged
        ]
    for agent_id, seq in unlogged[:20]:
        report.problems.append(f"kept record {agent_id} #{seq} is not in the log")
    if len(unlogged) > 20:
        report.problems.append(f"… and {len(unlogged) - 20} more kept records not in the log")


def _check_record(
    connection: Connection, entry: RecordEntry, report: AuditReport, expired_before: dt.datetime
) -> None:
    row = connection.execute(
        select(RecordRow.body, RecordRow.digest).where(
            RecordRow.agent_id == entry.agent_id, RecordRow.seq == entry.seq
        )
    ).first()
    name = f"record {entry.agent_id} #{entry.seq}"
    if row is None:
        if entry.ended_at < expired_before:
            report.expired += 1
        else:
            report.problems.append(f"{name} is in the log but was deleted")
        return
    report.records_checked += 1
    if record_digest(stored_body(bytes(row.body))) != entry.digest:
        report.problems.append(f"{name} was changed after it was logged")
    elif bytes(row.digest) != entry.digest:
        report.problems.append(f"{name}: its digest column was changed after it was logged")


def _check_fold(
    connection: Connection, entry: FoldEntry, report: AuditReport, expired_before: dt.datetime
) -> None:
    fold = connection.execute(
        select(RecordFold).where(
            RecordFold.agent_id == entry.agent_id, RecordFold.first_seq == entry.first_seq
        )
    ).first()
    name = f"fold {entry.agent_id} #{entry.first_seq}..{entry.last_seq}"
    if fold is None:
        if entry.last_at < expired_before:
            report.expired += 1
        else:
            report.problems.append(f"{name} is in the log but was deleted")
        return
    report.folds_checked += 1
    stored = (fold.last_seq, bytes(fold.prev), bytes(fold.head), json.loads(fold.outcomes))
    if stored != (entry.last_seq, entry.prev, entry.head, dict(entry.outcomes)):
        report.problems.append(f"{name} was changed after it was logged")
