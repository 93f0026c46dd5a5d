"""Residency bundles from a simulated fleet under the real verifier (registrar, API, Celery
worker + beat, redis-server, SQLite): exported, then verified with nothing but the auditor's
CA directory and the published log keys; and each tampering the issue lists, refused with the
file named (one test each). The swtpm end-to-end run is ``test_residency_proof_e2e.py``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from geoattest.cli import main
from geoattest.db import make_engine, session_factory
from geoattest.proof_export import ExportSpec, run_export
from geoattest.settings import Settings
from tests.support.agent_simulator import AgentSimulator
from tests.support.log_keys import log_keyring
from tests.support.simulated_fleet import SimulatedFleet, simulated_fleet
from tests.support.software_pki import make_ca
from tests.support.verifier_stack import settings_environment
from verifier.core.checkpoint import verify_checkpoint
from verifier.core.jwk import parse_public_keys
from verifier.core.jws import b64url, sign_compact
from verifier.engine.runtime import log_keyring as runtime_keyring
from verifier.export import layout
from verifier.signing.keyring import Keyring
from verifier.storage.models import RecordFold, RecordRow
from verifier.storage.records import RecordStore
from verifier.storage.tokens import TokenDraft, TokenLedger

pytestmark = [pytest.mark.redis, pytest.mark.slow]


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


def _wait(fleet: SimulatedFleet, sim: AgentSimulator, state: str) -> None:
    fleet.verifier.wait_for_state(sim.agent_id, state, timeout=20)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bundles]:
    work = tmp_path_factory.mktemp("bundles")
    with simulated_fleet(work, agents=2, log_checkpoint_seconds=1) as fleet:
        tampered, quiet = fleet.attested_agent(), fleet.attested_agent()
        start = dt.datetime.now(dt.UTC)
        fleet.serve_rounds(tampered, 3)
        tampered.measure("/tmp/.hidden/miner", content=b"not in any policy")
        _wait(fleet, tampered, "failed")
        tampered.reboot()  # a clean boot, then the operator re-admits
        assert fleet.verifier.act(tampered.agent_id, "readmit").status_code == 200
        _wait(fleet, tampered, "attested")
        fleet.serve_rounds(tampered, 2)
        tampered.reboot()
        fleet.serve_rounds(tampered, 3)
        _wait(fleet, tampered, "attested")
        fleet.server.offline.add(tampered.agent_id)
        _wait(fleet, tampered, "unreachable")
        fleet.server.offline.discard(tampered.agent_id)
        _wait(fleet, tampered, "attested")
        fleet.serve_rounds(tampered, 3)
        end = dt.datetime.now(dt.UTC)
        beat = requests.get(f"{fleet.verifier.url}/v1/log/checkpoint", timeout=10)
        assert beat.status_code == 200, beat.text
        settings = fleet.verifier.settings.model_copy(update={"ek_ca_dir": work / "ek-ca"})
        token = _issue_token(settings, quiet.agent_id, start + (end - start) / 2)

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


def _issue_token(settings: Settings, agent_id: str, at: dt.datetime) -> str:
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


def _rounds_stored(bundles: Bundles, agent_id: str) -> int:
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


def _verify(bundles: Bundles, path: Path, *extra: str) -> Result:
    args = ["verify-bundle", str(path), "--ek-ca", str(bundles.ek_ca), "--verifier-key",
            str(bundles.keys), *extra]  # fmt: skip
    return CliRunner().invoke(main, args)


def _files(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _write(files: dict[str, bytes], path: Path) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            archive.writestr(name, files[name])
    return path


def _refused(result: Result, file: str, check: str) -> None:
    assert result.exit_code == 2, result.output
    first = result.output.splitlines()[0]
    assert first.startswith(f"REFUSED: {file}: {check}"), result.output


def _records(files: dict[str, bytes], agent_id: str) -> list[str]:
    return sorted(p for p in files if p.startswith(f"agents/{agent_id}/records/"))


# --- what verifies ------------------------------------------------------------------------------


def test_the_bundle_verifies_offline_and_its_counts_are_what_the_fleet_did(
    bundles: Bundles,
) -> None:
    result = _verify(bundles, bundles.both, "--json")
    assert result.exit_code == 4, result.output  # verified, and the window holds a failure
    report = json.loads(result.output)
    agents = {a["agent_id"]: a for a in report["agents"]}
    tampered, quiet = agents[bundles.tampered], agents[bundles.quiet]
    assert quiet["clean"] is True
    assert quiet["failed"] == 0
    assert quiet["gaps"] == []
    assert [f["reason"] for f in tampered["failures"]] == ["ima_entry_not_allowed"]
    assert tampered["other"] == 1  # the reboot seen (the other one came before re-admission)
    assert tampered["unreachable"] >= 1
    assert len(tampered["gaps"]) >= 2  # failed until re-admitted, and the outage
    events = bundles.fleet.verifier.events(bundles.tampered)
    to_states = [e["to_state"] for e in reversed(events)]
    assert to_states.count("failed") == 1
    assert to_states.count("unreachable") == 1
    for agent in (tampered, quiet):
        assert (
            agent["rounds"]
            == agent["passed"] + agent["failed"] + agent["unreachable"] + agent["other"]
        )
        assert agent["rounds"] == _rounds_stored(bundles, agent["agent_id"])
        assert agent["records_verified"] > 0
    assert any("activation" in item for item in report["not_checked"])


def test_a_single_agent_bundle_of_a_clean_node_exits_0(bundles: Bundles) -> None:
    result = _verify(bundles, bundles.only_quiet)
    assert result.exit_code == 0, result.output
    assert "result: attested (and inside its zones) for the whole window" in result.output


def test_verification_is_deterministic(bundles: Bundles) -> None:
    first, second = _verify(bundles, bundles.both), _verify(bundles, bundles.both)
    assert first.output == second.output
    assert first.exit_code == second.exit_code == 4


def test_beat_signs_checkpoints_as_the_fleet_runs(bundles: Bundles) -> None:
    keys = parse_public_keys(bundles.keys.read_bytes())
    signed = verify_checkpoint(str(bundles.beat_checkpoint["checkpoint"]), keys)
    assert signed.checkpoint.size > 0  # kept records went into the log before any export
    assert signed.checkpoint.time >= bundles.start - dt.timedelta(seconds=5)


def test_export_at_a_moment_and_by_policy_from_the_command_line(
    bundles: Bundles, tmp_path: Path
) -> None:
    env = settings_environment(bundles.settings)
    moment = (bundles.start + (bundles.end - bundles.start) / 3).isoformat()
    at = CliRunner().invoke(
        main, ["export", "--agent", bundles.quiet, "--at", moment, "-o", str(tmp_path / "at.zip")],
        env=env,
    )  # fmt: skip
    assert at.exit_code == 0, at.output
    result = _verify(bundles, tmp_path / "at.zip", "--json")
    answer = json.loads(result.output)["agents"][0]["at"]
    assert answer["attested"] is True
    fleet = CliRunner().invoke(
        main,
        ["export", "--fleet", "--policy", "edge", "--from", bundles.start.isoformat(), "--to",
         bundles.end.isoformat(), "-o", str(tmp_path / "fleet.zip")],
        env=env,
    )  # fmt: skip
    assert fleet.exit_code == 0, fleet.output
    manifest = layout.decode_manifest(_files(tmp_path / "fleet.zip")[layout.MANIFEST])
    assert {a.agent_id for a in manifest.agents} == {bundles.tampered, bundles.quiet}
    usage = CliRunner().invoke(main, ["export", "--fleet", "-o", str(tmp_path / "x.zip"),
                                      "--at", moment], env=env)  # fmt: skip
    assert usage.exit_code == 1
    assert "--fleet with one of --policy or --zone" in usage.output


# --- what is refused, naming the file ---------------------------------------------------------


def test_a_modified_byte_in_a_record_is_refused(bundles: Bundles, tmp_path: Path) -> None:
    files = _files(bundles.both)
    path = _records(files, bundles.tampered)[2]
    data = bytearray(files[path])
    data[len(data) // 2] ^= 0x01
    files[path] = bytes(data)
    _refused(_verify(bundles, _write(files, tmp_path / "b.zip")), path, "file digest")


@pytest.mark.parametrize("position", [0.1, 0.35, 0.6, 0.85])
def test_a_modified_byte_anywhere_in_the_archive_is_never_accepted(
    bundles: Bundles, tmp_path: Path, position: float
) -> None:
    data = bytearray(bundles.both.read_bytes())
    data[int(len(data) * position)] ^= 0x20
    (tmp_path / "b.zip").write_bytes(bytes(data))
    result = _verify(bundles, tmp_path / "b.zip")
    assert result.exit_code in (2, 3), result.output  # refused, or not even a readable archive


def test_a_removed_record_is_refused(bundles: Bundles, tmp_path: Path) -> None:
    files = _files(bundles.both)
    path = _records(files, bundles.tampered)[3]
    del files[path]
    _refused(_verify(bundles, _write(files, tmp_path / "b.zip")), path, "manifest")


def test_a_removed_record_with_a_manifest_to_match_is_refused(
    bundles: Bundles, tmp_path: Path
) -> None:
    """Even re-signed by the verifier's own key (an insider), the chain names the gap."""
    files = _files(bundles.only_tampered)
    removed = _records(files, bundles.tampered)[3]
    del files[removed]
    _resign(files, bundles)
    result = _verify(bundles, _write(files, tmp_path / "b.zip"))
    assert result.exit_code == 2, result.output
    first = result.output.splitlines()[0]
    assert "hash chain" in first, first
    assert "records missing or reordered" in first, first


def test_reordered_records_are_refused(bundles: Bundles, tmp_path: Path) -> None:
    files = _files(bundles.only_tampered)
    first, second = _records(files, bundles.tampered)[1:3]
    files[first], files[second] = files[second], files[first]
    _resign(files, bundles)
    _refused(_verify(bundles, _write(files, tmp_path / "b.zip")), first, "record seq")


def test_a_record_swapped_from_another_agent_is_refused(bundles: Bundles, tmp_path: Path) -> None:
    files = _files(bundles.only_tampered)
    other = _files(bundles.only_quiet)
    target = _records(files, bundles.tampered)[2]
    files[target] = other[_records(other, bundles.quiet)[-1]]
    _resign(files, bundles)
    _refused(_verify(bundles, _write(files, tmp_path / "b.zip")), target, "agent")


def test_a_checkpoint_signed_by_another_key_is_refused(bundles: Bundles, tmp_path: Path) -> None:
    files = _files(bundles.both)
    other = log_keyring(tmp_path / "other").active()
    header, payload, _ = files[layout.CHECKPOINT].decode().split(".")
    forged = json.loads(_unb64(header))
    forged["kid"] = other.kid
    signing_input = f"{b64url(json.dumps(forged).encode())}.{payload}"
    files[layout.CHECKPOINT] = (
        f"{signing_input}.{b64url(other.sign(signing_input.encode()))}".encode()
    )
    _resign(files, bundles)
    _refused(
        _verify(bundles, _write(files, tmp_path / "b.zip")),
        layout.CHECKPOINT,
        "checkpoint signature",
    )


def test_a_manifest_signed_by_a_key_inside_the_bundle_is_refused(
    bundles: Bundles, tmp_path: Path
) -> None:
    files = _files(bundles.both)
    attacker = log_keyring(tmp_path / "attacker")
    jwks = json.dumps(attacker.jwks(dt.datetime.now(dt.UTC))).encode()
    files["keys/verifier.jwks"] = jwks  # "verify with this"
    _resign(files, bundles, key=attacker, embed=True)
    _refused(
        _verify(bundles, _write(files, tmp_path / "b.zip")),
        layout.MANIFEST_SIGNATURE,
        "manifest signature",
    )


def test_a_manifest_signed_by_another_key_without_saying_so_is_refused(
    bundles: Bundles, tmp_path: Path
) -> None:
    files = _files(bundles.both)
    _resign(files, bundles, key=log_keyring(tmp_path / "attacker"))
    result = _verify(bundles, _write(files, tmp_path / "b.zip"))
    _refused(result, layout.MANIFEST_SIGNATURE, "manifest signature")
    assert "not one of the given keys" in result.output


def test_an_unsigned_bundle_is_refused(bundles: Bundles, tmp_path: Path) -> None:
    files = _files(bundles.both)
    del files[layout.MANIFEST_SIGNATURE]
    result = _verify(bundles, _write(files, tmp_path / "b.zip"))
    _refused(result, layout.MANIFEST_SIGNATURE, "manifest signature")
    assert "not signed" in result.output


def test_a_file_the_manifest_does_not_list_is_refused(bundles: Bundles, tmp_path: Path) -> None:
    files = _files(bundles.both)
    files["agents/extra.json"] = b"{}"
    _refused(_verify(bundles, _write(files, tmp_path / "b.zip")), "agents/extra.json", "manifest")


def test_a_logged_record_changed_and_re_signed_is_refused_by_the_log(
    bundles: Bundles, tmp_path: Path
) -> None:
    """An insider with the log key can re-sign the manifest, not rewrite the log."""
    files = _files(bundles.only_tampered)
    failure = next(p for p in _records(files, bundles.tampered) if b"integrity_failure" in files[p])
    files[failure] = files[failure].replace(b'"message":"', b'"message":"(reviewed) ', 1)
    _resign(files, bundles)
    _refused(_verify(bundles, _write(files, tmp_path / "b.zip")), failure, "inclusion")


def test_a_changed_inclusion_proof_is_refused(bundles: Bundles, tmp_path: Path) -> None:
    files = _files(bundles.only_tampered)
    path = layout.log_path(bundles.tampered)
    body = json.loads(files[path])
    entry = next(e for e in body["entries"] if e["path"])
    entry["path"][0] = "00" * 32
    files[path] = json.dumps(body).encode()
    _resign(files, bundles)
    _refused(_verify(bundles, _write(files, tmp_path / "b.zip")), path, "inclusion")


def test_a_log_entry_of_another_agent_is_refused(bundles: Bundles, tmp_path: Path) -> None:
    files = _files(bundles.both)
    mine, theirs = layout.log_path(bundles.tampered), layout.log_path(bundles.quiet)
    body = json.loads(files[mine])
    body["entries"].append(json.loads(files[theirs])["entries"][0])
    files[mine] = json.dumps(body).encode()
    _resign(files, bundles)
    _refused(_verify(bundles, _write(files, tmp_path / "b.zip")), mine, "agent")


def test_a_forged_verdict_in_a_record_not_yet_logged_fails_re_verification(
    bundles: Bundles, tmp_path: Path
) -> None:
    """The newest records are not in the log yet: their own evidence still holds them."""
    files = _files(bundles.hot)
    last = _records(files, bundles.quiet)[-1]
    forged = files[last].replace(b'{"check":"ima","verdict":"passed"}',
                                 b'{"check":"ima","verdict":"skipped"}')  # fmt: skip
    assert forged != files[last]
    files[last] = forged
    _resign(files, bundles)
    _refused(_verify(bundles, _write(files, tmp_path / "b.zip")), last, "re-verification")


def test_a_nonce_answered_twice_is_refused(bundles: Bundles, tmp_path: Path) -> None:
    files = _files(bundles.hot)
    earlier, last = _records(files, bundles.quiet)[-2:]
    nonce = json.loads(files[earlier])["evidence"]["nonce"]
    mine = json.loads(files[last])["evidence"]["nonce"]
    files[last] = files[last].replace(mine.encode(), nonce.encode())
    _resign(files, bundles)
    _refused(_verify(bundles, _write(files, tmp_path / "b.zip")), last, "nonce replay")


def test_an_ek_from_a_ca_the_auditor_does_not_trust_is_refused(
    bundles: Bundles, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca"
    other.mkdir()
    (other / "ca.pem").write_bytes(make_ca().pem)
    args = ["verify-bundle", str(bundles.both), "--ek-ca", str(other), "--verifier-key",
            str(bundles.keys)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    _refused(result, f"agents/{bundles.tampered}/identity/ek-certificate.der", "EK chain")


def test_the_registrar_signature_verifies_with_the_registrar_key(bundles: Bundles) -> None:
    pinned = bundles.settings.registrar_signing_key
    assert pinned is not None
    result = _verify(bundles, bundles.only_quiet, "--registrar-key", str(pinned), "--json")
    assert result.exit_code == 0, result.output
    assert not any("signature" in item for item in json.loads(result.output)["not_checked"])


def test_a_registrar_key_the_record_was_not_signed_with_is_refused(
    bundles: Bundles, tmp_path: Path
) -> None:
    other = tmp_path / "other-registrar.pem"
    other.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    path = layout.identity_path(bundles.quiet, layout.Identity.REGISTRAR_RECORD)
    result = _verify(bundles, bundles.only_quiet, "--registrar-key", str(other))
    _refused(result, path, "registrar signature")


def test_a_registrar_record_changed_by_an_insider_is_refused_by_its_signature(
    bundles: Bundles, tmp_path: Path
) -> None:
    """The verifier's own key re-signs the manifest; the registrar's statement still names the
    record it signed (here: another agent URL)."""
    files = _files(bundles.only_quiet)
    path = layout.identity_path(bundles.quiet, layout.Identity.REGISTRAR_RECORD)
    record = json.loads(files[path])
    record["agent_url"] = "https://attacker.example:8892"
    files[path] = json.dumps(record).encode()
    _resign(files, bundles)
    pinned = str(bundles.settings.registrar_signing_key)
    result = _verify(bundles, _write(files, tmp_path / "b.zip"), "--registrar-key", pinned)
    _refused(result, path, "registrar signature")


def test_tokens_issued_in_the_window_travel_and_verify_against_the_log(
    bundles: Bundles, tmp_path: Path
) -> None:
    files = _files(bundles.only_quiet)
    tokens = json.loads(files[layout.tokens_path(bundles.quiet)])["tokens"]
    assert [(t["jti"], t["token"]) for t in tokens] == [("tok-1", bundles.token)]
    assert _verify(bundles, bundles.only_quiet).exit_code == 0
    path = layout.tokens_path(bundles.quiet)
    files[path] = files[path].replace(b"c2lnbmF0dXJl", b"Zm9yZ2VkIHNpZw")
    _resign(files, bundles)
    _refused(_verify(bundles, _write(files, tmp_path / "b.zip")), path, "token")


def test_a_manifest_changed_without_its_signature_is_refused(
    bundles: Bundles, tmp_path: Path
) -> None:
    files = _files(bundles.both)
    files[layout.MANIFEST] = files[layout.MANIFEST].replace(
        b'"window":{"from":"', b'"window":{"from":"1'
    )
    _refused(_verify(bundles, _write(files, tmp_path / "b.zip")), layout.MANIFEST,
             "manifest signature")  # fmt: skip


def test_a_manifest_naming_another_tree_size_is_refused(bundles: Bundles, tmp_path: Path) -> None:
    files = _files(bundles.both)
    manifest = layout.decode_manifest(files[layout.MANIFEST])
    files[layout.MANIFEST] = layout.encode_manifest(
        replace(manifest, log_size=manifest.log_size + 1)
    )
    _resign(files, bundles, keep_manifest=True)
    _refused(_verify(bundles, _write(files, tmp_path / "b.zip")), layout.CHECKPOINT, "checkpoint")


def test_a_broken_consistency_proof_is_refused(bundles: Bundles, tmp_path: Path) -> None:
    files = _files(bundles.only_tampered)
    assert layout.CONSISTENCY in files, "the window checkpoint is older than the latest one"
    body = json.loads(files[layout.CONSISTENCY])
    body["path"][-1] = "11" * 32
    files[layout.CONSISTENCY] = json.dumps(body).encode()
    _resign(files, bundles)
    _refused(_verify(bundles, _write(files, tmp_path / "b.zip")), layout.CONSISTENCY, "consistency")


def test_a_policy_document_other_than_its_digest_is_refused(
    bundles: Bundles, tmp_path: Path
) -> None:
    files = _files(bundles.both)
    path = next(p for p in files if p.startswith("policies/"))
    files[path] = files[path].replace(b'"ima_banks":["sha256"]', b'"ima_banks":["sha1"]')
    _resign(files, bundles)
    _refused(_verify(bundles, _write(files, tmp_path / "b.zip")), path, "document digest")


def test_a_record_naming_another_predecessor_is_refused(bundles: Bundles, tmp_path: Path) -> None:
    files = _files(bundles.hot)
    last = _records(files, bundles.quiet)[-1]
    prev = json.loads(files[last])["prev"]
    files[last] = files[last].replace(prev.encode(), b"ab" * 32)
    _resign(files, bundles)
    result = _verify(bundles, _write(files, tmp_path / "b.zip"))
    _refused(result, last, "hash chain")
    assert "does not name the digest" in result.output


def test_unreadable_input_exits_3_and_usage_errors_1(bundles: Bundles, tmp_path: Path) -> None:
    (tmp_path / "not.zip").write_bytes(b"this is not a zip archive")
    assert _verify(bundles, tmp_path / "not.zip").exit_code == 3
    (tmp_path / "key.json").write_text("{}")
    args = ["verify-bundle", str(bundles.both), "--ek-ca", str(bundles.ek_ca),
            "--verifier-key", str(tmp_path / "key.json")]  # fmt: skip
    assert CliRunner().invoke(main, args).exit_code == 3
    assert CliRunner().invoke(main, ["verify-bundle", str(bundles.both)]).exit_code == 1


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _resign(
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
