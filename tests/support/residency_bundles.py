"""Residency bundles exported from a simulated fleet under the real verifier (registrar, API,
Celery worker + beat, redis-server, SQLite), and what the bundle tests do with them: run
``verify-bundle``, read and rewrite archives, re-sign manifests as an insider would."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import requests
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from geoattest.cli import main
from geoattest.db import make_engine, session_factory
from geoattest.proof_export import ExportSpec, run_export
from geoattest.settings import Settings
from tests.support.agent_simulator import AgentSimulator
from tests.support.simulated_fleet import SimulatedFleet, simulated_fleet
from verifier.core.jws import b64url, sign_compact
from verifier.engine.runtime import log_keyring as runtime_keyring
from verifier.export import layout
from verifier.signing.keyring import Keyring
from verifier.storage.models import RecordFold, RecordRow
from verifier.storage.records import RecordStore
from verifier.storage.tokens import TokenDraft, TokenLedger


@dataclass
class Bundles:
    fleet: SimulatedFleet
    settings: Settings
    tampered: str  # agent id: passes, a tamper, re-admission, a reboot, an outage
    quiet: str  # agent id: passes only
    both: Path
    only_tampered: Path
    only_quiet: Path
    hot: Path  # the quiet agent's records before they folded: the last ones not yet logged
    beat_checkpoint: dict[str, object]  # /v1/log/checkpoint before any export signed one
    token: str  # the compact token issued to the quiet agent (in verifier_tokens and the log)
    ek_ca: Path
    keys: Path
    work: Path
    start: dt.datetime
    end: dt.datetime


def wait_state(fleet: SimulatedFleet, sim: AgentSimulator, state: str) -> None:
    fleet.verifier.wait_for_state(sim.agent_id, state, timeout=20)


@contextmanager
def built_bundles(work: Path) -> Iterator[Bundles]:
    """A two-agent simulated fleet that ran, failed, rebooted and went offline, and its bundles
    (module docstring); the fleet keeps running until the context ends."""
    with simulated_fleet(work, agents=2, log_checkpoint_seconds=1) as fleet:
        tampered, quiet = fleet.attested_agent(), fleet.attested_agent()
        start = dt.datetime.now(dt.UTC)
        fleet.serve_rounds(tampered, 3)
        tampered.measure("/tmp/.hidden/miner", content=b"not in any policy")
        wait_state(fleet, tampered, "failed")
        tampered.reboot()  # a clean boot, then the operator re-admits
        assert fleet.verifier.act(tampered.agent_id, "readmit").status_code == 200
        wait_state(fleet, tampered, "attested")
        fleet.serve_rounds(tampered, 2)
        tampered.reboot()
        fleet.serve_rounds(tampered, 3)
        wait_state(fleet, tampered, "attested")
        fleet.server.offline.add(tampered.agent_id)
        wait_state(fleet, tampered, "unreachable")
        fleet.server.offline.discard(tampered.agent_id)
        wait_state(fleet, tampered, "attested")
        fleet.serve_rounds(tampered, 3)
        end = dt.datetime.now(dt.UTC)
        beat = requests.get(f"{fleet.verifier.url}/v1/log/checkpoint", timeout=10)
        assert beat.status_code == 200, beat.text
        settings = fleet.verifier.settings.model_copy(update={"ek_ca_dir": work / "ek-ca"})
        token = issue_token(settings, quiet.agent_id, start + (end - start) / 2)

        def export(agents: list[str], name: str) -> Path:
            path = work / name
            spec = ExportSpec(
                agents=agents, policy=None, zone=None, start=start, end=end, at=None, output=path
            )
            run_export(settings, spec, show_progress=False)
            return path

        hot = export([quiet.agent_id], "hot.zip")
        for agent_id in (tampered.agent_id, quiet.agent_id):  # a kept record closes each run
            assert fleet.verifier.act(agent_id, "pause").status_code == 200
        engine = make_engine(settings.database_url)
        later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=10)
        assert RecordStore(session_factory(engine)).fold(
            now=later, hot_window=dt.timedelta(seconds=1)
        )
        engine.dispose()
        keys = work / "log-keys.json"
        keys.write_text(json.dumps(runtime_keyring(settings).jwks(end)))
        both = export([tampered.agent_id, quiet.agent_id], "both.zip")
        # The log grows after it (an operator's change): later bundles prove consistency.
        policy = fleet.verifier.put_policy("edge-2", {"ima_banks": ["sha256"]})
        assert policy.status_code == 200, policy.text
        yield Bundles(
            fleet=fleet,
            settings=settings,
            tampered=tampered.agent_id,
            quiet=quiet.agent_id,
            both=both,
            only_tampered=export([tampered.agent_id], "tampered.zip"),
            only_quiet=export([quiet.agent_id], "quiet.zip"),
            hot=hot,
            beat_checkpoint=beat.json(),
            token=token,
            ek_ca=work / "ek-ca",
            keys=keys,
            work=work,
            start=start,
            end=end,
        )


def issue_token(settings: Settings, agent_id: str, at: dt.datetime) -> str:
    """A token stored as the token service stores one (``TokenLedger``, which queues its log
    entry in the same transaction), on the agent's newest passed round; the agent is attested,
    so the ledger keeps it (asked again if a round passed in between, as the service does)."""
    token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJl"  # noqa: S105  # opaque
    engine = make_engine(settings.database_url)
    records = RecordStore(session_factory(engine))
    ledger = TokenLedger(engine)
    kept = [False]
    try:
        for _attempt in range(5):
            latest = records.latest_passed(agent_id)
            assert latest is not None
            kept = ledger.store_many(
                [
                    TokenDraft(
                        jti="tok-1",
                        agent_id=agent_id,
                        type="pog",
                        audience="model-service",
                        workload_sha256=hashlib.sha256(b"model-service").digest(),
                        issued_at=at,
                        expires_at=at + dt.timedelta(minutes=5),
                        record_seq=latest.record.seq,
                        record_ended_at=latest.record.ended_at,
                        max_age=dt.timedelta(days=1),
                        token=token,
                    )
                ]
            )
            if kept == [True]:
                break
    finally:
        ledger.close()
        engine.dispose()
    assert kept == [True]
    return token


def rounds_stored(bundles: Bundles, agent_id: str) -> int:
    """What the verifier's database says the agent did in the window: round records, and the
    rounds of the folds that start in it."""
    engine = make_engine(bundles.settings.database_url)
    window = (bundles.start, bundles.end)
    with engine.connect() as connection:
        records = connection.execute(
            select(func.count()).where(
                RecordRow.agent_id == agent_id,
                RecordRow.kind == "round",
                RecordRow.ended_at.between(*window),
            )
        ).scalar()
        folded = connection.execute(
            select(func.sum(RecordFold.count)).where(
                RecordFold.agent_id == agent_id, RecordFold.first_at.between(*window)
            )
        ).scalar()
    engine.dispose()
    return int(records or 0) + int(folded or 0)


def verify_cli(bundles: Bundles, path: Path, *extra: str) -> Result:
    args = ["verify-bundle", str(path), "--ek-ca", str(bundles.ek_ca), "--verifier-key",
            str(bundles.keys), *extra]  # fmt: skip
    return CliRunner().invoke(main, args)


def bundle_files(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def write_bundle(files: dict[str, bytes], path: Path) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            archive.writestr(name, files[name])
    return path


def assert_refused(result: Result, file: str, check: str) -> None:
    assert result.exit_code == 2, result.output
    first = result.output.splitlines()[0]
    assert first.startswith(f"REFUSED: {file}: {check}"), result.output


def record_paths(files: dict[str, bytes], agent_id: str) -> list[str]:
    return sorted(p for p in files if p.startswith(f"agents/{agent_id}/records/"))


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def resign(
    files: dict[str, bytes],
    bundles: Bundles,
    *,
    key: object | None = None,
    embed: bool = False,
    keep_manifest: bool = False,
) -> None:
    """Recompute the manifest for ``files`` and sign it: with the verifier's own log key (an
    insider who holds it), or with ``key``, optionally naming that key in the JWS header."""
    manifest = layout.decode_manifest(files[layout.MANIFEST])
    listed = tuple(
        layout.FileDigest(path=p, sha256=hashlib.sha256(d).digest(), size=len(d))
        for p, d in files.items()
        if p not in (layout.MANIFEST, layout.MANIFEST_SIGNATURE)
    )
    encoded = layout.encode_manifest(replace(manifest, files=listed))
    if keep_manifest:
        encoded = files[layout.MANIFEST]
    files[layout.MANIFEST] = encoded
    ring = key if isinstance(key, Keyring) else runtime_keyring(bundles.settings)
    signer = ring.active()
    if not embed:
        files[layout.MANIFEST_SIGNATURE] = sign_compact(
            encoded, typ=layout.MANIFEST_TYP, signer=signer
        ).encode()
        return
    jwk = ring.jwks(dt.datetime.now(dt.UTC))["keys"][0]
    header = {"alg": "ES256", "kid": signer.kid, "typ": layout.MANIFEST_TYP, "jwk": jwk}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(encoded)}"
    signature = b64url(signer.sign(signing_input.encode()))
    files[layout.MANIFEST_SIGNATURE] = f"{signing_input}.{signature}".encode()
