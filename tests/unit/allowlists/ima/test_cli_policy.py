from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from allowlists.ima.policy import parse_runtime_policy
from allowlists.ima.template import encode_entry
from geoattest.cli import main
from tests.paths import REPO_ROOT, vector
from tests.unit.allowlists.ima.ima_vectors import VERIFICATION


def test_import_keylime_policy(tmp_path: Path) -> None:
    out = tmp_path / "policy.json"
    source = vector(f"{VERIFICATION}/runtime_policy_with_verification_keys.json")
    result = CliRunner().invoke(main, ["policy", "ima", "import", str(source), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "verification-keys dropped" in result.output
    assert "boot_aggregate" in parse_runtime_policy(out.read_text()).digests


def test_import_bogus_policy_exits_2() -> None:
    source = vector("keylime/runtime_policy/sign/runtime-policy-bogus.json")
    result = CliRunner().invoke(main, ["policy", "ima", "import", str(source), "-o", "-"])
    assert result.exit_code == 2
    assert "policy_invalid" in result.output


def test_generate_then_check(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "tmp").mkdir()
    (root / "usr/bin/tool").write_bytes(b"tool")
    (root / "tmp/scratch").write_bytes(b"scratch")
    (root / "usr/bin/link").symlink_to("tool")
    out = tmp_path / "policy.json"
    result = CliRunner().invoke(
        main,
        [
            *("policy", "ima", "generate", str(root), "-o", str(out), "--exclude", "/tmp/*"),
            *("--boot-aggregate", "sha1:" + "00" * 20),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "hashed 1 files, 4 B in " in result.output
    assert "3 paths in the policy (1 of them symbolic links to files), 1 excluded" in result.output
    document = json.loads(out.read_text())
    tool = "sha256:" + hashlib.sha256(b"tool").hexdigest()
    assert document["digests"] == {
        "/usr/bin/tool": [tool],
        "/usr/bin/link": [tool],  # the path a process runs it by (IMA logs /usr/bin/tool)
        "boot_aggregate": ["sha1:" + "00" * 20],
    }
    assert document["excludes"] == ["/tmp/*"]

    log = tmp_path / "log"
    good = [
        encode_entry(path="boot_aggregate", digest=bytes(20), digest_alg="sha1").line,
        encode_entry(path="/usr/bin/tool", digest=hashlib.sha256(b"tool").digest()).line,
        encode_entry(path="/tmp/other", digest=bytes(32)).line,
    ]
    log.write_text("\n".join(good) + "\n")
    result = CliRunner().invoke(main, ["policy", "ima", "check", str(out), str(log)])
    assert result.exit_code == 0, result.output
    assert "ok: 3 entries allowed" in result.output

    evil = encode_entry(path="/usr/bin/evil", digest=bytes(32)).line
    log.write_text("\n".join([*good, evil]) + "\n")
    result = CliRunner().invoke(main, ["policy", "ima", "check", str(out), str(log)])
    assert result.exit_code == 2
    assert "ima_entry_not_allowed: IMA line 4: file '/usr/bin/evil'" in result.output


def test_check_against_a_quoted_pcr_that_the_log_never_reaches(tmp_path: Path) -> None:
    out = tmp_path / "policy.json"
    out.write_text('{"version": 1, "excludes": ["*"]}')
    log = tmp_path / "log"
    log.write_text(encode_entry(path="/x", digest=bytes(32)).line + "\n")
    result = CliRunner().invoke(
        main, ["policy", "ima", "check", str(out), str(log), "--pcr10", "sha256:" + "11" * 32]
    )
    assert result.exit_code == 2
    assert "ima_pcr_mismatch" in result.output


def test_generate_reports_progress_in_files_and_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("geoattest.cli_policy.PROGRESS_SECONDS", 0.0)
    for i in range(3):
        (tmp_path / f"f{i}").write_bytes(b"x" * 1500 * (i + 1))
    result = CliRunner().invoke(main, ["policy", "ima", "generate", str(tmp_path), "-o", "-"])
    assert result.exit_code == 0, result.output
    assert re.search(r"^hashed 2 files, 4\.5 kB, \d+ s$", result.output, re.MULTILINE)
    assert re.search(r"^hashed 3 files, 9\.0 kB in \d+\.\d s$", result.output, re.MULTILINE)


def test_generate_into_a_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["policy", "ima", "generate", str(tmp_path), "-o", str(tmp_path / "no" / "p.json")]
    )
    assert result.exit_code == 1  # usage (ADR 0011)
    assert "does not exist" in result.output


def test_generate_counts_and_names_unreadable_files(tmp_path: Path) -> None:
    """Run as a process without the capabilities that let root read anything."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/ok").write_bytes(b"ok")
    for name in ("shadow", "gshadow"):
        (root / "etc" / name).write_bytes(b"secret")
        (root / "etc" / name).chmod(0)
    (root / "private").mkdir(mode=0)
    out = tmp_path / "policy.json"
    prefix = []
    if os.geteuid() == 0:
        prefix = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search"]
    argv = [sys.executable, "-m", "geoattest", "policy", "ima", "generate", str(root)]
    done = subprocess.run(
        [*prefix, *argv, "-o", str(out)], capture_output=True, text=True, timeout=60, check=False
    )
    (root / "private").chmod(0o755)
    assert done.returncode == 0, done.stderr
    assert (
        "1 paths in the policy (0 of them symbolic links to files), 0 excluded, 3 unreadable"
        in (done.stderr)
    )
    assert "  unreadable: /etc/gshadow: Permission denied" in done.stderr
    assert "  unreadable: /private: Permission denied" in done.stderr
    assert list(json.loads(out.read_text())["digests"]) == ["/etc/ok"]


SIGNED = REPO_ROOT / "tests" / "vectors" / "keylime" / "runtime_policy"


def _import(*args: str) -> Result:
    return CliRunner().invoke(main, ["policy", "ima", "import", *args])


def test_import_a_signed_keylime_policy_with_its_key(tmp_path: Path) -> None:
    out = tmp_path / "policy.json"
    result = _import(
        str(SIGNED / "runtime-policy-test-signed.json"),
        *("--keylime-key", str(SIGNED / "runtime-policy-pubkey.pub"), "-o", str(out)),
    )
    assert result.exit_code == 0, result.output
    assert "note: DSSE signature verified (signer key 8114198dd64f" in result.output
    assert "imported 21 paths" in result.output
    assert "boot_aggregate" in parse_runtime_policy(out.read_text()).digests


@pytest.mark.parametrize(
    ("policy", "key", "code"),
    [
        (
            "runtime-policy-test-signed-bad.json",
            "runtime-policy-pubkey.pub",
            "policy_signature_invalid",
        ),
        ("runtime-policy-test-signed.json", "sign/ec-p521-public.pem", "policy_signature_invalid"),
        ("runtime-policy-test.json", "runtime-policy-pubkey.pub", "policy_not_signed"),
        ("runtime-policy-test-signed.json", None, "policy_key_required"),
    ],
)
def test_import_refuses_what_it_cannot_verify(
    tmp_path: Path, policy: str, key: str | None, code: str
) -> None:
    out = tmp_path / "policy.json"
    key_args = ("--keylime-key", str(SIGNED / key)) if key else ()
    result = _import(str(SIGNED / policy), *key_args, "-o", str(out))
    assert result.exit_code == 2, result.output
    assert f"error: {code}: " in result.output
    assert not out.exists()


def test_import_with_a_key_that_is_no_ec_key_is_a_configuration_error(tmp_path: Path) -> None:
    not_a_key = tmp_path / "key.pem"
    not_a_key.write_text("hello\n")
    result = _import(
        str(SIGNED / "runtime-policy-test-signed.json"), "--keylime-key", str(not_a_key), "-o", "-"
    )
    assert result.exit_code == 1, result.output
    assert f"error: configuration_error: --keylime-key {not_a_key}: not a PEM" in result.output
