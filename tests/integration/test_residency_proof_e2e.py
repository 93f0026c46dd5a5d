"""A residency proof end to end, on a real node: swtpm, the agent's evidence API over mTLS, an
IMA log written like a kernel's, a GNSS receiver replaying a real capture near Schramberg (DE),
the registrar, and the real verifier (API, Celery worker + beat signing checkpoints every
second, redis-server, SQLite, Natural Earth zones) with a policy requiring zone ``DEU``.

The node passes rounds, is tampered with (an unknown executable) and re-admitted after a clean
boot, reboots, and goes offline for a while. ``geoattest export`` (a separate process) bundles
the window; the verifier's database is then moved away and ``geoattest verify-bundle`` runs in
a clean process with nothing but the CA directory and the published log keys: it verifies, its
counts are what the node did, and it prints the same thing twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from agent.location import LocationProvider
from agent.tpm_device import DEFAULT_LOCATION_KEY_HANDLE
from geoattest.db import make_engine, session_factory
from geoattest.dev.procs import GEOATTEST
from geoattest.dev.swtpm import SwtpmCa
from geofence import SourceKind
from tests.paths import vector
from tests.support import MakeSwtpm, SwtpmTemplates, swtpm_factory
from tests.support.live_gnss import LiveReceiver, black_forest
from tests.support.redis_server import running_redis
from tests.support.registrar_server import RunningRegistrar, running_registrar, trust_dir_with
from tests.support.swtpm_agent import Node, start_node, swtpm_node_policy
from tests.support.verifier_stack import (
    RunningVerifier,
    running_verifier,
    settings_environment,
    verifier_settings,
)
from verifier.core.jws import sign_compact
from verifier.engine.runtime import log_keyring
from verifier.export import layout
from verifier.storage.models import RecordFold, RecordRow
from verifier.storage.records import RecordStore

pytestmark = [pytest.mark.swtpm, pytest.mark.redis, pytest.mark.slow]

POLICY = "proof-de"


@dataclass
class Run:
    """What the node did, and what came out of it."""

    registrar: RunningRegistrar
    verifier: RunningVerifier
    node: Node
    bundle: Path
    keys: Path
    trust_dir: Path
    start: dt.datetime
    end: dt.datetime
    outage: dt.datetime  # a moment the node was offline
    stored: dict[str, int]  # rounds, failures, reboots, unreachable, passed, from the database
    work: Path


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory, test_ca: SwtpmCa, swtpm_templates: SwtpmTemplates
) -> Iterator[Run]:
    work = tmp_path_factory.mktemp("residency-e2e")
    trust_dir = trust_dir_with(work / "ek-ca", test_ca.trust_store)
    zones = vector("zones/ne_110m_admin_0_countries.geojson")
    with (
        running_redis(work) as redis_url,
        running_registrar(work, trust_dir) as registrar,
        swtpm_factory(swtpm_templates, test_ca, work / "swtpm-states") as make_swtpm,
    ):
        settings = verifier_settings(
            work,
            redis_url,
            registrar,
            zones_file=zones,
            zones_repair=True,
            log_checkpoint_seconds=1.0,
            record_sample_seconds=3.0,
        )
        with running_verifier(settings, work) as verifier:
            yield _run(work, registrar, verifier, make_swtpm, trust_dir)


def _run(
    work: Path,
    registrar: RunningRegistrar,
    verifier: RunningVerifier,
    make_swtpm: MakeSwtpm,
    trust_dir: Path,
) -> Run:
    document = swtpm_node_policy(
        location={"zones": ["DEU"], "thresholds": {"accepted_sources": ["file"]}}
    )
    assert verifier.put_policy(POLICY, document).status_code == 200
    provider = LocationProvider(
        None, None, DEFAULT_LOCATION_KEY_HANDLE, wait_for_fix_s=1.5, source_kind=SourceKind.FILE
    )
    node = start_node(
        make_swtpm(),
        work / "node",
        "proof-node-1",
        client_ca=verifier.client_ca,
        registrar=registrar,
        location=provider,
    )
    receiver = LiveReceiver(provider, black_forest())
    try:
        return _life(work, registrar, verifier, node, trust_dir)
    finally:
        receiver.stop()
        node.stop_api()


def _life(
    work: Path,
    registrar: RunningRegistrar,
    verifier: RunningVerifier,
    node: Node,
    trust_dir: Path,
) -> Run:
    assert verifier.add_agent(node.agent_id, POLICY).status_code == 201
    verifier.wait_for_state(node.agent_id, "attested")
    start = dt.datetime.now(dt.UTC)
    verifier.wait_rounds(node.agent_id, 8)  # passing rounds, some sampled in full
    node.ima.measure("/tmp/.hidden/miner", b"not in any policy")  # the tamper
    verifier.wait_for_state(node.agent_id, "failed", timeout=15)
    node.clean_boot()
    assert verifier.act(node.agent_id, "readmit").status_code == 200  # re-admission
    verifier.wait_for_state(node.agent_id, "attested", timeout=20)
    verifier.wait_rounds(node.agent_id, 4)
    node.clean_boot()  # a reboot the verifier sees
    verifier.wait_rounds(node.agent_id, 4)
    verifier.wait_for_state(node.agent_id, "attested", timeout=20)
    node.stop_api()  # the outage
    verifier.wait_for_state(node.agent_id, "unreachable", timeout=15)
    outage = dt.datetime.now(dt.UTC)
    time.sleep(2)
    node.start_api()
    verifier.wait_for_state(node.agent_id, "attested", timeout=30)
    verifier.wait_rounds(node.agent_id, 6)
    end = dt.datetime.now(dt.UTC)
    assert verifier.act(node.agent_id, "pause").status_code == 200  # closes the last run
    database = verifier.settings.database_url
    engine = make_engine(database)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=10)
    assert RecordStore(session_factory(engine)).fold(now=later, hot_window=dt.timedelta(seconds=1))
    stored = _stored(engine, node.agent_id, start, end)
    engine.dispose()
    keys = work / "log-keys.json"
    keys.write_text(json.dumps(log_keyring(verifier.settings).jwks(end)))
    bundle = work / "proof.zip"
    exported = subprocess.run(
        [*GEOATTEST, "export", "--agent", node.agent_id, "--from", start.isoformat(),
         "--to", end.isoformat(), "-o", str(bundle)],
        env=settings_environment(verifier.settings), cwd=work, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert "exporting" in exported.stderr  # the progress bar
    return Run(
        registrar=registrar,
        verifier=verifier,
        node=node,
        bundle=bundle,
        keys=keys,
        trust_dir=trust_dir,
        start=start,
        end=end,
        outage=outage,
        stored=stored,
        work=work,
    )


def _stored(engine: Engine, agent_id: str, start: dt.datetime, end: dt.datetime) -> dict[str, int]:
    """What the database says the node did in the window (records by outcome, and folds)."""
    counts = {"rounds": 0, "passed": 0, "integrity_failure": 0, "unreachable": 0, "rebooted": 0}
    with engine.connect() as connection:
        for outcome, count in connection.execute(
            select(RecordRow.outcome, func.count())
            .where(
                RecordRow.agent_id == agent_id,
                RecordRow.kind == "round",
                RecordRow.ended_at.between(start, end),
            )
            .group_by(RecordRow.outcome)
        ):
            counts["rounds"] += count
            counts[str(outcome)] = counts.get(str(outcome), 0) + count
        for (outcomes,) in connection.execute(
            select(RecordFold.outcomes).where(
                RecordFold.agent_id == agent_id, RecordFold.first_at.between(start, end)
            )
        ):
            for outcome, count in json.loads(outcomes).items():
                counts["rounds"] += count
                counts[outcome] = counts.get(outcome, 0) + count
    return counts


def _verify(run: Run, bundle: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``geoattest verify-bundle`` in a clean process: no GEOATTEST_* settings, another
    directory, the verifier's database out of reach."""
    clean = run.work / "auditor"
    clean.mkdir(exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(clean), "LANG": "C.UTF-8"}
    return subprocess.run(
        [*GEOATTEST, "verify-bundle", str(bundle), "--ek-ca", str(run.trust_dir),
         "--verifier-key", str(run.keys), "--registrar-key", str(run.registrar.signing_key),
         *extra],
        env=env, cwd=clean, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def offline(run: Run) -> Iterator[Run]:
    """The verifier's database moved away for the offline checks."""
    database = run.work / "verifier.sqlite"
    moved = run.work / "elsewhere.sqlite"
    database.rename(moved)
    yield run
    moved.rename(database)


def test_a_fleet_export_by_zone_takes_every_node_whose_policy_names_it(run: Run) -> None:
    """Runs before the database is moved away (tests run in file order)."""
    bundle = run.work / "zone.zip"
    exported = subprocess.run(
        [*GEOATTEST, "export", "--fleet", "--zone", "DEU", "--from", run.start.isoformat(),
         "--to", run.end.isoformat(), "-o", str(bundle)],
        env=settings_environment(run.verifier.settings), cwd=run.work, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    with zipfile.ZipFile(bundle) as archive:
        manifest = layout.decode_manifest(archive.read(layout.MANIFEST))
    assert [a.agent_id for a in manifest.agents] == [run.node.agent_id]
    nobody = subprocess.run(
        [*GEOATTEST, "export", "--fleet", "--zone", "FRA", "--from", run.start.isoformat(),
         "--to", run.end.isoformat(), "-o", str(run.work / "none.zip")],
        env=settings_environment(run.verifier.settings), cwd=run.work, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip
    assert nobody.returncode == 2
    assert "no agent to export" in nobody.stderr


def test_the_bundle_verifies_offline_and_counts_what_the_node_did(offline: Run) -> None:
    result = _verify(offline, offline.bundle, "--json")
    assert result.returncode == 4, result.stdout + result.stderr  # verified, with findings
    report = json.loads(result.stdout)
    (agent,) = report["agents"]
    stored = offline.stored
    assert agent["rounds"] == stored["rounds"]
    assert agent["passed"] == stored["passed"]
    assert agent["failed"] == stored["integrity_failure"] == 1
    assert agent["unreachable"] == stored["unreachable"] >= 1
    assert agent["other"] == stored["rebooted"] >= 1
    assert [f["reason"] for f in agent["failures"]] == ["ima_entry_not_allowed"]
    # Not attested: from the tamper to re-admission, after the reboot, during the outage.
    assert len(agent["gaps"]) >= 3
    # Every passed round was inside DEU, and so was the tampered round's fix (its IMA failed,
    # its location check passed); the reboot's round judged no location.
    assert agent["decisions"] == {"inside": stored["passed"] + 1, "outside": 0, "uncertain": 0}
    assert agent["records_verified"] >= 5
    not_checked = " ".join(report["not_checked"])
    assert "credential activation" in not_checked
    assert "registrar's signature" not in not_checked  # checked with --registrar-key


def test_verification_prints_the_same_twice(offline: Run) -> None:
    first, second = _verify(offline, offline.bundle), _verify(offline, offline.bundle)
    assert first.returncode == second.returncode == 4
    assert first.stdout == second.stdout
    assert "failures:" in first.stdout
    assert "ima_entry_not_allowed" in first.stdout


def test_at_a_moment_it_says_where_the_node_was_and_whether_it_was_attested(
    offline: Run,
) -> None:
    during = json.loads(
        _verify(offline, offline.bundle, "--json", "--at", offline.outage.isoformat()).stdout
    )
    assert during["agents"][0]["at"]["attested"] is False
    before = offline.start + dt.timedelta(seconds=2)
    answer = json.loads(
        _verify(offline, offline.bundle, "--json", "--at", before.isoformat()).stdout
    )["agents"][0]["at"]
    assert answer["attested"] is True
    assert answer["fix"]["decision"] == "inside"
    assert answer["fix"]["zone"] == "DEU"
    assert 48.0 < answer["fix"]["latitude"] < 48.5  # Schramberg, Black Forest


def test_a_location_key_whose_certification_was_replaced_is_refused(offline: Run) -> None:
    with zipfile.ZipFile(offline.bundle) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    path = layout.identity_path(offline.node.agent_id, layout.Identity.CERTIFY_SIGNATURE)
    signature = bytearray(files[path])
    signature[-5] ^= 0x01
    files[path] = bytes(signature)
    _resign(files, offline)
    forged = offline.work / "forged-certify.zip"
    with zipfile.ZipFile(forged, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    result = _verify(offline, forged)
    assert result.returncode == 2, result.stdout
    attest = layout.identity_path(offline.node.agent_id, layout.Identity.CERTIFY_ATTEST)
    assert result.stdout.startswith(f"REFUSED: {attest}: location key certification")


def _resign(files: dict[str, bytes], run: Run) -> None:
    """An insider with the verifier's log key re-signs the manifest over changed files."""
    manifest = layout.decode_manifest(files[layout.MANIFEST])
    listed = tuple(
        layout.FileDigest(path=p, sha256=hashlib.sha256(d).digest(), size=len(d))
        for p, d in files.items()
        if p not in (layout.MANIFEST, layout.MANIFEST_SIGNATURE)
    )
    encoded = layout.encode_manifest(replace(manifest, files=listed))
    files[layout.MANIFEST] = encoded
    signer = log_keyring(run.verifier.settings).active()
    files[layout.MANIFEST_SIGNATURE] = sign_compact(
        encoded, typ=layout.MANIFEST_TYP, signer=signer
    ).encode()


def test_the_report_renders_html_pdf_and_csv_from_the_bundle_alone(offline: Run) -> None:
    outputs = {suffix: offline.work / f"report{suffix}" for suffix in (".html", ".pdf", ".csv")}
    for path in outputs.values():
        result = subprocess.run(
            [*GEOATTEST, "report", str(offline.bundle), "-o", str(path), "--ek-ca",
             str(offline.trust_dir), "--verifier-key", str(offline.keys)],
            env={"PATH": "/usr/bin:/bin", "HOME": str(offline.work)}, cwd=offline.work,
            capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        assert result.returncode == 4, result.stdout + result.stderr  # findings, as verify's
    page = outputs[".html"].read_text()
    for needle in ("Residency proof", "Timeline of states", "<polygon", ">DEU<", "<circle",
                   "ima_entry_not_allowed", "Not checked", "credential activation"):  # fmt: skip
        assert needle in page, needle
    assert outputs[".pdf"].read_bytes().startswith(b"%PDF-")
    pages = subprocess.run(
        ["pdftoppm", "-r", "40", "-png", str(outputs[".pdf"]), str(offline.work / "page")],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert pages.returncode == 0, pages.stderr
    assert sorted(offline.work.glob("page*.png")), "the PDF has no page"
    rows = outputs[".csv"].read_text().splitlines()
    assert rows[0].startswith("agent_id,kind,first_seq")
    folds = [row for row in rows[1:] if ",fold," in row]
    assert folds, "the per-round table shows the folded rounds"
    assert any(",integrity_failure," in row for row in rows)
