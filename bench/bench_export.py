"""Residency proofs: bytes per agent-day of export, export time for 30 agent-days, and records
verified per second per core offline.

    .venv/bin/python bench/bench_export.py [--agents 30] [--verify-days 10]

**Data.** One agent-day of rounds at the default cadence (a round every 2 s: 43,200) is made
as ``bench_records`` makes it: genuine-format evidence from a software TPM judged by
``verify_round``, a 21-line IMA log, ~0.8 KB of location evidence per round. It is then laid
into a real SQLite database as the verifier leaves it after the hot window, for every agent:
the kept records (the first, then one per 5 minutes) with their transparency-log entries, and
one fold per gap with its entry, the chain computed over every round. (Committing and folding
1.3 M rounds through the writer would take half an hour and measures the writer, which
``bench_records`` does; the rows and entries here are the ones it writes.) The agents are
enrolled at a real registrar, the log sequenced and signed with a real keyring.

**Export.** ``geoattest export --fleet --policy`` of the 30 agent-days, as the CLI runs it
(``run_export``): wall time and the bundle's bytes per agent-day.

**Verification.** A second data set without location evidence (``bench_records`` attaches its
location bytes after the quote, so those records do not re-verify): one agent, ``--verify-days``
days of the same rounds shifted by whole days (each day keeping other rounds in full, so that
no nonce repeats: verification refuses that), exported, then ``verify_bundle`` in this
process on one core: full records re-verified per second, and links (records + folds) checked
per second. Geofenced records cost more (a P-256 signature and the zone decision): measured
separately on records made with a software location key (``--location-records``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine, insert

from agent.enrolment import enrol
from bench.bench_records import _boot_log_policy, _real_fix_evidence, day_of_records
from geoattest.db import make_engine, migrate, session_factory
from geoattest.proof_export import ExportSpec, run_export
from geoattest.registrar_client import RegistrarClient
from geoattest.settings import Settings, load_settings
from geoattest.trust_files import load_trust_store_dir
from geoattest.wire import PolicyDocument
from tests.support.agent_simulator import AgentSimulator, make_simulators, policy_document
from tests.support.registrar_server import RunningRegistrar, running_registrar
from tests.support.software_pki import make_ca
from verifier.core.log_entry import FoldEntry, RecordEntry
from verifier.core.policy import (
    AttestationPolicy,
    canonical_document,
    document_digest,
    policy_from_document,
)
from verifier.core.record import GENESIS, encode_record, record_digest
from verifier.core.record_types import EvidenceRecord
from verifier.core.states import AgentState
from verifier.engine.runtime import log_keyring
from verifier.export.archive import read_bundle
from verifier.export.verify import Trust, verify_bundle
from verifier.storage.log import TransparencyLog
from verifier.storage.log_queue import entry_row
from verifier.storage.models import LogEntryRow, RecordFold, RecordRow
from verifier.storage.records import RecordStore
from verifier.storage.sql import AgentTarget, VerifierStore
from verifier.worker import sequence_and_sign

DAY_ROUNDS = int(os.environ.get("BENCH_DAY_ROUNDS", "43200"))
INTERVAL = dt.timedelta(seconds=2)
SAMPLE = dt.timedelta(minutes=5)
START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
POLICY = "bench"


def lay_down(
    engine: Engine,
    agent_id: str,
    days: Sequence[tuple[int, list[EvidenceRecord]]],
) -> dict[str, int]:
    """The stored state of ``days`` of rounds (day offset, drafts) after folding: kept records
    and folds, each with its log entry, chained over every round."""
    seq, prev, last_sample = 0, GENESIS, None
    kept_rows: list[dict[str, object]] = []
    fold_rows: list[dict[str, object]] = []
    entries: list[dict[str, object]] = []
    run: list[tuple[int, dt.datetime, bytes, bytes]] = []  # (seq, ended, prev, digest)

    def close_run() -> None:
        if not run:
            return
        ends = [r[1] for r in run]
        gap = max((b - a for a, b in itertools.pairwise(ends)), default=dt.timedelta())
        fold = FoldEntry(
            agent_id=agent_id, first_seq=run[0][0], last_seq=run[-1][0], first_at=ends[0],
            last_at=ends[-1], prev=run[0][2], head=run[-1][3], outcomes={"passed": len(run)},
            max_gap_ms=round(gap.total_seconds() * 1000),
        )  # fmt: skip
        fold_rows.append(
            {"agent_id": agent_id, "first_seq": fold.first_seq, "last_seq": fold.last_seq,
             "count": fold.count, "first_at": fold.first_at, "last_at": fold.last_at,
             "prev": fold.prev, "head": fold.head, "outcomes": json.dumps({"passed": len(run)})}
        )  # fmt: skip
        entries.append(entry_row(fold, fold.last_at))
        run.clear()

    for offset, drafts in days:
        shift = dt.timedelta(days=offset)
        if offset:  # a day's copy keeps other rounds than the day before (other nonces)
            phase = dt.timedelta(seconds=16 * offset)
            last_sample = drafts[0].ended_at + shift - SAMPLE + phase
        for draft in drafts:
            seq += 1
            first = seq == 1
            record = replace(
                draft, agent_id=agent_id, seq=seq, prev=prev,
                started_at=draft.started_at + shift, ended_at=draft.ended_at + shift,
                judged_at=(draft.judged_at + shift) if draft.judged_at else None,
                from_state=AgentState.REGISTERED if first else AgentState.ATTESTED,
                to_state=AgentState.ATTESTED,
            )  # fmt: skip
            encoded = encode_record(record)
            digest = record_digest(encoded)
            sampled = last_sample is None or record.ended_at - last_sample >= SAMPLE
            if first or sampled:
                close_run()
                last_sample = record.ended_at
                kept_rows.append(
                    {"agent_id": agent_id, "seq": seq, "kind": "round",
                     "round_id": record.round_id, "started_at": record.started_at,
                     "ended_at": record.ended_at, "outcome": "passed", "reason": None,
                     "kept": True, "digest": digest, "prev": prev,
                     "body": zlib.compress(encoded, 6), "size": len(encoded)}
                )  # fmt: skip
                entries.append(
                    entry_row(
                        RecordEntry(agent_id=agent_id, seq=seq, digest=digest,
                                    ended_at=record.ended_at), record.ended_at,
                    )
                )  # fmt: skip
            else:
                run.append((seq, record.ended_at, prev, digest))
            prev = digest
    close_run()
    with engine.begin() as connection:
        connection.execute(insert(RecordRow), kept_rows)
        connection.execute(insert(RecordFold), fold_rows)
        entries.sort(key=lambda e: str(e["queued_at"]))  # log order: as they were made
        connection.execute(insert(LogEntryRow), entries)
        connection.exec_driver_sql(
            "UPDATE verifier_agents SET state = 'attested', chain_seq = ?, chain_head = ? "
            "WHERE agent_id = ?",
            (seq, prev, agent_id),
        )
    return {"kept": len(kept_rows), "folds": len(fold_rows), "rounds": seq}


def _database(work: Path, sims: Sequence[AgentSimulator], document: dict[str, object]) -> Engine:
    engine = make_engine(f"sqlite:///{work / 'verifier.sqlite'}")
    migrate(engine)
    store = VerifierStore(session_factory(engine))
    canonical = canonical_document(PolicyDocument.model_validate(document))
    store.put_policy(POLICY, canonical, document_digest(canonical), START)
    for sim in sims:
        store.add_agent(
            AgentTarget(agent_id=sim.agent_id, policy_name=POLICY, ak_public=sim.ak_public,
                        agent_url="https://127.0.0.1:1", tls_certificate=b"-",
                        state=AgentState.REGISTERED),
            START,
        )  # fmt: skip
    return engine


_ENTRY_OVERHEAD = 60  # a log entry row's fixed columns and row header, roughly
_NODE_OVERHEAD = 24


def _stored_bytes(engine: Engine, agent_ids: Sequence[str]) -> dict[str, int]:
    """Bytes the records and folds take (``RecordStore.bytes_stored``) and the log's entries
    and tree nodes (the payloads plus a row overhead, as that method counts)."""
    records = RecordStore(session_factory(engine)).bytes_stored(agent_ids)
    with engine.connect() as connection:
        entries = connection.exec_driver_sql(
            "SELECT count(*), sum(length(entry) + length(leaf_hash)) FROM verifier_log_entries"
        ).one()
        nodes = connection.exec_driver_sql("SELECT count(*) FROM verifier_log_nodes").scalar()
    log = int(entries[1] or 0) + int(entries[0]) * _ENTRY_OVERHEAD
    log += int(nodes or 0) * (32 + _NODE_OVERHEAD)
    return {"records": records, "log": log}


def _enrol(registrar_url: str, sims: Sequence[AgentSimulator]) -> None:
    client = RegistrarClient(registrar_url)
    for sim in sims:
        enrol(sim.tpm, client, sim.agent_id)
    client.close()


def export_bench(work: Path, agents: int) -> dict[str, float]:
    ca = make_ca()
    (work / "ek-ca").mkdir()
    (work / "ek-ca" / "ca.pem").write_bytes(ca.pem)
    sims = make_simulators(agents, ca, prefix="exp")
    for i in range(20):  # a 21-line boot log, as bench_records
        sims[0].measure(f"/usr/lib/geoattest/boot-{i}.so", content=f"lib {i}".encode())
    document = policy_document(sims[0])
    engine = _database(work, sims, document)
    policy = _boot_log_policy(sims[0], _policy(document))
    began = time.perf_counter()
    drafts = list(
        day_of_records(sims[0], policy, START, _real_fix_evidence(os.urandom(32)), DAY_ROUNDS)
    )
    made = time.perf_counter() - began
    laid = [lay_down(engine, sim.agent_id, [(0, drafts)]) for sim in sims]
    with running_registrar(work, work / "ek-ca") as registrar:
        _enrol(registrar.url, sims)
        settings = _settings(work, registrar)
        sequence_and_sign(_log(engine), log_keyring(settings), dt.datetime.now(dt.UTC))
        stored = _stored_bytes(engine, [sim.agent_id for sim in sims])
        spec = ExportSpec(
            agents=(), policy=POLICY, zone=None, start=START,
            end=START + dt.timedelta(days=1), at=None, output=work / "fleet.zip",
        )  # fmt: skip
        began = time.perf_counter()
        summary = run_export(settings, spec, show_progress=False)
        seconds = time.perf_counter() - began
    size = (work / "fleet.zip").stat().st_size
    with zipfile.ZipFile(work / "fleet.zip") as archive:
        infos = archive.infolist()
    records = sum(i.compress_size for i in infos if "/records/" in i.filename)
    proofs = sum(i.compress_size for i in infos if i.filename.endswith("/log.json"))
    engine.dispose()
    return {
        "agents": agents,
        "records_db_bytes_per_agent_day": stored["records"] / agents,
        "log_db_bytes_per_agent_day": stored["log"] / agents,
        "rounds_made_seconds": made,
        "kept_per_agent_day": laid[0]["kept"],
        "folds_per_agent_day": laid[0]["folds"],
        "export_seconds": seconds,
        "bundle_bytes": size,
        "bytes_per_agent_day": size / agents,
        "records_zipped_bytes_per_agent_day": records / agents,
        "log_and_proofs_zipped_bytes_per_agent_day": proofs / agents,
        "records": summary.records,
    }


def verify_bench(work: Path, days: int) -> dict[str, float]:
    ca = make_ca()
    (work / "ek-ca").mkdir()
    (work / "ek-ca" / "ca.pem").write_bytes(ca.pem)
    sims = make_simulators(1, ca, prefix="ver")
    document = policy_document(sims[0])
    engine = _database(work, sims, document)
    policy = _policy(document)
    drafts = list(day_of_records(sims[0], policy, START, None, DAY_ROUNDS))
    laid = lay_down(engine, sims[0].agent_id, [(d, drafts) for d in range(days)])
    with running_registrar(work, work / "ek-ca") as registrar:
        _enrol(registrar.url, sims)
        settings = _settings(work, registrar)
        sequence_and_sign(_log(engine), log_keyring(settings), dt.datetime.now(dt.UTC))
        spec = ExportSpec(
            agents=(sims[0].agent_id,), policy=None, zone=None, start=START,
            end=START + dt.timedelta(days=days), at=None, output=work / "days.zip",
        )  # fmt: skip
        run_export(settings, spec, show_progress=False)
    keys = {k.kid: k.public for k in log_keyring(settings).published(dt.datetime.now(dt.UTC))}
    trust = Trust(verifier_keys=keys, ek_store=load_trust_store_dir(work / "ek-ca"))
    files = read_bundle(work / "days.zip")
    best = float("inf")
    for _ in range(3):
        began = time.process_time()
        result = verify_bundle(files, trust)
        best = min(best, time.process_time() - began)
    engine.dispose()
    (agent,) = result.agents
    return {
        "days": days,
        "rounds": laid["rounds"],
        "records_verified": result.records_verified,
        "links": len(agent.links),
        "cpu_seconds": best,
        "records_per_second": result.records_verified / best,
        "links_per_second": len(agent.links) / best,
    }


def _policy(document: dict[str, object]) -> AttestationPolicy:
    """The policy as stored (version 1, digest of its canonical document)."""
    parsed = PolicyDocument.model_validate(document)
    digest = document_digest(canonical_document(parsed))
    return policy_from_document(POLICY, 1, parsed, None, digest=digest)


def _settings(work: Path, registrar: RunningRegistrar) -> Settings:
    return load_settings(
        database_url=f"sqlite:///{work / 'verifier.sqlite'}",
        registrar_url=registrar.url,
        registrar_api_key=registrar.reader_key,
        verifier_keys_dir=work / "keys",
        ek_ca_dir=work / "ek-ca",
        log_origin="geoattest/log/bench",
    )


def _log(engine: Engine) -> TransparencyLog:
    return TransparencyLog(engine, origin="geoattest/log/bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=30, help="agent-days to export")
    parser.add_argument("--verify-days", type=int, default=10, help="days of one agent verified")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "export").mkdir()
        (Path(tmp) / "verify").mkdir()
        exported = export_bench(Path(tmp) / "export", args.agents)
        verified = verify_bench(Path(tmp) / "verify", args.verify_days)
    print(json.dumps({"export": exported, "verify": verified}, indent=2))
    print(
        f"stored per agent-day: records and folds {exported['records_db_bytes_per_agent_day']:,.0f}"
        f" bytes, the transparency log {exported['log_db_bytes_per_agent_day']:,.0f} bytes"
    )
    print(
        f"export of {exported['agents']:.0f} agent-days: {exported['export_seconds']:.1f} s, "
        f"{exported['bytes_per_agent_day']:,.0f} bytes per agent-day (records "
        f"{exported['records_zipped_bytes_per_agent_day']:,.0f}, log entries and proofs "
        f"{exported['log_and_proofs_zipped_bytes_per_agent_day']:,.0f}) "
        f"({exported['kept_per_agent_day']:.0f} kept records and "
        f"{exported['folds_per_agent_day']:.0f} folds per agent-day)"
    )
    print(
        f"verification: {verified['records_per_second']:,.0f} full records re-verified per "
        f"second on one core ({verified['links_per_second']:,.0f} links/s; "
        f"{verified['records_verified']:.0f} records of {verified['days']:.0f} days in "
        f"{verified['cpu_seconds']:.1f} s CPU)"
    )


if __name__ == "__main__":
    main()
