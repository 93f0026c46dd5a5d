"""Each tampering of a residency bundle the issue lists, refused with the file named (one test
each)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from geoattest.cli import main
from tests.support.log_keys import log_keyring
from tests.support.residency_bundles import (
    Bundles,
    assert_refused,
    bundle_files,
    record_paths,
    resign,
    unb64,
    verify_cli,
    write_bundle,
)
from tests.support.software_pki import make_ca
from verifier.core.jws import b64url
from verifier.export import layout

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def test_a_modified_byte_in_a_record_is_refused(bundles: Bundles, tmp_path: Path) -> None:
    files = bundle_files(bundles.both)
    path = record_paths(files, bundles.tampered)[2]
    data = bytearray(files[path])
    data[len(data) // 2] ^= 0x01
    files[path] = bytes(data)
    assert_refused(
        verify_cli(bundles, write_bundle(files, tmp_path / "b.zip")), path, "file digest"
    )


@pytest.mark.parametrize("position", [0.1, 0.35, 0.6, 0.85])
def test_a_modified_byte_anywhere_in_the_archive_is_never_accepted(
    bundles: Bundles, tmp_path: Path, position: float
) -> None:
    data = bytearray(bundles.both.read_bytes())
    data[int(len(data) * position)] ^= 0x20
    (tmp_path / "b.zip").write_bytes(bytes(data))
    result = verify_cli(bundles, tmp_path / "b.zip")
    assert result.exit_code in (2, 3), result.output  # refused, or not even a readable archive


def test_a_removed_record_is_refused(bundles: Bundles, tmp_path: Path) -> None:
    files = bundle_files(bundles.both)
    path = record_paths(files, bundles.tampered)[3]
    del files[path]
    assert_refused(verify_cli(bundles, write_bundle(files, tmp_path / "b.zip")), path, "manifest")


def test_a_removed_record_with_a_manifest_to_match_is_refused(
    bundles: Bundles, tmp_path: Path
) -> None:
    """Even re-signed by the verifier's own key (an insider), the chain names the gap."""
    files = bundle_files(bundles.only_tampered)
    removed = record_paths(files, bundles.tampered)[3]
    del files[removed]
    resign(files, bundles)
    result = verify_cli(bundles, write_bundle(files, tmp_path / "b.zip"))
    assert result.exit_code == 2, result.output
    first = result.output.splitlines()[0]
    assert "hash chain" in first, first
    assert "records missing or reordered" in first, first


def test_reordered_records_are_refused(bundles: Bundles, tmp_path: Path) -> None:
    files = bundle_files(bundles.only_tampered)
    first, second = record_paths(files, bundles.tampered)[1:3]
    files[first], files[second] = files[second], files[first]
    resign(files, bundles)
    assert_refused(
        verify_cli(bundles, write_bundle(files, tmp_path / "b.zip")), first, "record seq"
    )


def test_a_record_swapped_from_another_agent_is_refused(bundles: Bundles, tmp_path: Path) -> None:
    files = bundle_files(bundles.only_tampered)
    other = bundle_files(bundles.only_quiet)
    target = record_paths(files, bundles.tampered)[2]
    files[target] = other[record_paths(other, bundles.quiet)[-1]]
    resign(files, bundles)
    assert_refused(verify_cli(bundles, write_bundle(files, tmp_path / "b.zip")), target, "agent")


def test_a_checkpoint_signed_by_another_key_is_refused(bundles: Bundles, tmp_path: Path) -> None:
    files = bundle_files(bundles.both)
    other = log_keyring(tmp_path / "other").active()
    header, payload, _ = files[layout.CHECKPOINT].decode().split(".")
    forged = json.loads(unb64(header))
    forged["kid"] = other.kid
    signing_input = f"{b64url(json.dumps(forged).encode())}.{payload}"
    files[layout.CHECKPOINT] = (
        f"{signing_input}.{b64url(other.sign(signing_input.encode()))}".encode()
    )
    resign(files, bundles)
    assert_refused(
        verify_cli(bundles, write_bundle(files, tmp_path / "b.zip")),
        layout.CHECKPOINT,
        "checkpoint signature",
    )


def test_a_manifest_signed_by_a_key_inside_the_bundle_is_refused(
    bundles: Bundles, tmp_path: Path
) -> None:
    files = bundle_files(bundles.both)
    attacker = log_keyring(tmp_path / "attacker")
    jwks = json.dumps(attacker.jwks(dt.datetime.now(dt.UTC))).encode()
    files["keys/verifier.jwks"] = jwks  # "verify with this"
    resign(files, bundles, key=attacker, embed=True)
    assert_refused(
        verify_cli(bundles, write_bundle(files, tmp_path / "b.zip")),
        layout.MANIFEST_SIGNATURE,
        "manifest signature",
    )


def test_a_manifest_signed_by_another_key_without_saying_so_is_refused(
    bundles: Bundles, tmp_path: Path
) -> None:
    files = bundle_files(bundles.both)
    resign(files, bundles, key=log_keyring(tmp_path / "attacker"))
    result = verify_cli(bundles, write_bundle(files, tmp_path / "b.zip"))
    assert_refused(result, layout.MANIFEST_SIGNATURE, "manifest signature")
    assert "not one of the given keys" in result.output


def test_an_unsigned_bundle_is_refused(bundles: Bundles, tmp_path: Path) -> None:
    files = bundle_files(bundles.both)
    del files[layout.MANIFEST_SIGNATURE]
    result = verify_cli(bundles, write_bundle(files, tmp_path / "b.zip"))
    assert_refused(result, layout.MANIFEST_SIGNATURE, "manifest signature")
    assert "not signed" in result.output


def test_a_file_the_manifest_does_not_list_is_refused(bundles: Bundles, tmp_path: Path) -> None:
    files = bundle_files(bundles.both)
    files["agents/extra.json"] = b"{}"
    assert_refused(
        verify_cli(bundles, write_bundle(files, tmp_path / "b.zip")),
        "agents/extra.json",
        "manifest",
    )


def test_a_logged_record_changed_and_re_signed_is_refused_by_the_log(
    bundles: Bundles, tmp_path: Path
) -> None:
    """An insider with the log key can re-sign the manifest, not rewrite the log."""
    files = bundle_files(bundles.only_tampered)
    failure = next(
        p for p in record_paths(files, bundles.tampered) if b"integrity_failure" in files[p]
    )
    files[failure] = files[failure].replace(b'"message":"', b'"message":"(reviewed) ', 1)
    resign(files, bundles)
    assert_refused(
        verify_cli(bundles, write_bundle(files, tmp_path / "b.zip")), failure, "inclusion"
    )


def test_a_changed_inclusion_proof_is_refused(bundles: Bundles, tmp_path: Path) -> None:
    files = bundle_files(bundles.only_tampered)
    path = layout.log_path(bundles.tampered)
    body = json.loads(files[path])
    entry = next(e for e in body["entries"] if e["path"])
    entry["path"][0] = "00" * 32
    files[path] = json.dumps(body).encode()
    resign(files, bundles)
    assert_refused(verify_cli(bundles, write_bundle(files, tmp_path / "b.zip")), path, "inclusion")


def test_a_log_entry_of_another_agent_is_refused(bundles: Bundles, tmp_path: Path) -> None:
    files = bundle_files(bundles.both)
    mine, theirs = layout.log_path(bundles.tampered), layout.log_path(bundles.quiet)
    body = json.loads(files[mine])
    body["entries"].append(json.loads(files[theirs])["entries"][0])
    files[mine] = json.dumps(body).encode()
    resign(files, bundles)
    assert_refused(verify_cli(bundles, write_bundle(files, tmp_path / "b.zip")), mine, "agent")


def test_a_forged_verdict_in_a_record_not_yet_logged_fails_re_verification(
    bundles: Bundles, tmp_path: Path
) -> None:
    """The newest records are not in the log yet: their own evidence still holds them."""
    files = bundle_files(bundles.hot)
    last = record_paths(files, bundles.quiet)[-1]
    forged = files[last].replace(b'{"check":"ima","verdict":"passed"}',
                                 b'{"check":"ima","verdict":"skipped"}')  # fmt: skip
    assert forged != files[last]
    files[last] = forged
    resign(files, bundles)
    assert_refused(
        verify_cli(bundles, write_bundle(files, tmp_path / "b.zip")), last, "re-verification"
    )


def test_a_nonce_answered_twice_is_refused(bundles: Bundles, tmp_path: Path) -> None:
    files = bundle_files(bundles.hot)
    earlier, last = record_paths(files, bundles.quiet)[-2:]
    nonce = json.loads(files[earlier])["evidence"]["nonce"]
    mine = json.loads(files[last])["evidence"]["nonce"]
    files[last] = files[last].replace(mine.encode(), nonce.encode())
    resign(files, bundles)
    assert_refused(
        verify_cli(bundles, write_bundle(files, tmp_path / "b.zip")), last, "nonce replay"
    )


def test_an_ek_from_a_ca_the_auditor_does_not_trust_is_refused(
    bundles: Bundles, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca"
    other.mkdir()
    (other / "ca.pem").write_bytes(make_ca().pem)
    args = ["verify-bundle", str(bundles.both), "--ek-ca", str(other), "--verifier-key",
            str(bundles.keys)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert_refused(result, f"agents/{bundles.tampered}/identity/ek-certificate.der", "EK chain")


def test_the_registrar_signature_verifies_with_the_registrar_key(bundles: Bundles) -> None:
    pinned = bundles.settings.registrar_signing_key
    assert pinned is not None
    result = verify_cli(bundles, bundles.only_quiet, "--registrar-key", str(pinned), "--json")
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
    result = verify_cli(bundles, bundles.only_quiet, "--registrar-key", str(other))
    assert_refused(result, path, "registrar signature")


def test_a_registrar_record_changed_by_an_insider_is_refused_by_its_signature(
    bundles: Bundles, tmp_path: Path
) -> None:
    """The verifier's own key re-signs the manifest; the registrar's statement still names the
    record it signed (here: another agent URL)."""
    files = bundle_files(bundles.only_quiet)
    path = layout.identity_path(bundles.quiet, layout.Identity.REGISTRAR_RECORD)
    record = json.loads(files[path])
    record["agent_url"] = "https://attacker.example:8892"
    files[path] = json.dumps(record).encode()
    resign(files, bundles)
    pinned = str(bundles.settings.registrar_signing_key)
    result = verify_cli(bundles, write_bundle(files, tmp_path / "b.zip"), "--registrar-key", pinned)
    assert_refused(result, path, "registrar signature")


def test_tokens_issued_in_the_window_travel_and_verify_against_the_log(
    bundles: Bundles, tmp_path: Path
) -> None:
    files = bundle_files(bundles.only_quiet)
    tokens = json.loads(files[layout.tokens_path(bundles.quiet)])["tokens"]
    assert [(t["jti"], t["token"]) for t in tokens] == [("tok-1", bundles.token)]
    assert verify_cli(bundles, bundles.only_quiet).exit_code == 0
    path = layout.tokens_path(bundles.quiet)
    files[path] = files[path].replace(b"c2lnbmF0dXJl", b"Zm9yZ2VkIHNpZw")
    resign(files, bundles)
    assert_refused(verify_cli(bundles, write_bundle(files, tmp_path / "b.zip")), path, "token")


def test_a_manifest_changed_without_its_signature_is_refused(
    bundles: Bundles, tmp_path: Path
) -> None:
    files = bundle_files(bundles.both)
    files[layout.MANIFEST] = files[layout.MANIFEST].replace(
        b'"window":{"from":"', b'"window":{"from":"1'
    )
    assert_refused(verify_cli(bundles, write_bundle(files, tmp_path / "b.zip")), layout.MANIFEST,
             "manifest signature")  # fmt: skip


def test_a_manifest_naming_another_tree_size_is_refused(bundles: Bundles, tmp_path: Path) -> None:
    files = bundle_files(bundles.both)
    manifest = layout.decode_manifest(files[layout.MANIFEST])
    files[layout.MANIFEST] = layout.encode_manifest(
        replace(manifest, log_size=manifest.log_size + 1)
    )
    resign(files, bundles, keep_manifest=True)
    assert_refused(
        verify_cli(bundles, write_bundle(files, tmp_path / "b.zip")),
        layout.CHECKPOINT,
        "checkpoint",
    )


def test_a_broken_consistency_proof_is_refused(bundles: Bundles, tmp_path: Path) -> None:
    files = bundle_files(bundles.only_tampered)
    assert layout.CONSISTENCY in files, "the window checkpoint is older than the latest one"
    body = json.loads(files[layout.CONSISTENCY])
    body["path"][-1] = "11" * 32
    files[layout.CONSISTENCY] = json.dumps(body).encode()
    resign(files, bundles)
    assert_refused(
        verify_cli(bundles, write_bundle(files, tmp_path / "b.zip")),
        layout.CONSISTENCY,
        "consistency",
    )


def test_a_policy_document_other_than_its_digest_is_refused(
    bundles: Bundles, tmp_path: Path
) -> None:
    files = bundle_files(bundles.both)
    path = next(p for p in files if p.startswith("policies/"))
    files[path] = files[path].replace(b'"ima_banks":["sha256"]', b'"ima_banks":["sha1"]')
    resign(files, bundles)
    assert_refused(
        verify_cli(bundles, write_bundle(files, tmp_path / "b.zip")), path, "document digest"
    )


def test_a_record_naming_another_predecessor_is_refused(bundles: Bundles, tmp_path: Path) -> None:
    files = bundle_files(bundles.hot)
    last = record_paths(files, bundles.quiet)[-1]
    prev = json.loads(files[last])["prev"]
    files[last] = files[last].replace(prev.encode(), b"ab" * 32)
    resign(files, bundles)
    result = verify_cli(bundles, write_bundle(files, tmp_path / "b.zip"))
    assert_refused(result, last, "hash chain")
    assert "does not name the digest" in result.output


def test_unreadable_input_exits_3_and_usage_errors_1(bundles: Bundles, tmp_path: Path) -> None:
    (tmp_path / "not.zip").write_bytes(b"this is not a zip archive")
    assert verify_cli(bundles, tmp_path / "not.zip").exit_code == 3
    (tmp_path / "key.json").write_text("{}")
    args = ["verify-bundle", str(bundles.both), "--ek-ca", str(bundles.ek_ca),
            "--verifier-key", str(tmp_path / "key.json")]  # fmt: skip
    assert CliRunner().invoke(main, args).exit_code == 3
    assert CliRunner().invoke(main, ["verify-bundle", str(bundles.both)]).exit_code == 1
