from __future__ import annotations

import pytest

from allowlists.ima.keylime_import import convert_keylime_policy, import_keylime_policy
from allowlists.ima.policy import dump_runtime_policy, parse_runtime_policy
from geoattest.errors import PolicyInvalid
from tests.unit.allowlists.ima.ima_vectors import VERIFICATION, read

POLICIES = "keylime/runtime_policy"


def test_runtime_policy_test_converts() -> None:
    policy = import_keylime_policy(read(f"{VERIFICATION}/runtime_policy_test.json"))
    assert policy.digests["/usr/bin/dd"] == {
        "sha256:d33d5d13792292e202dbf69a6f1b07bc8a02f01424db8489ba7bb7d43c0290ef"
    }
    assert policy.digests["/usr/bin/zless"] == {"sha1:233ad3a8e77c63a7d9a56063ec2cad1eafa58850"}
    assert policy.keyrings[".ima"] == {
        "sha256:a7d52aaa18c23d2d9bb2abb4308c0eeee67387a42259f4a6b1a42257065f3d5a"
    }
    assert parse_runtime_policy(dump_runtime_policy(policy)) == policy


def test_fedora_coreos_policy_with_prefixed_and_bare_digests() -> None:
    policy = import_keylime_policy(read(f"{POLICIES}/runtime-policy-test.json"))
    assert policy.digests["boot_aggregate"] == {
        "sha256:4309217e9709def327c3409407f4d52907aeba46ef1b4f46529fd095f2ef9fb2"
    }
    assert len(policy.digests) == 21


@pytest.mark.parametrize("alg", ["sha1", "sha256", "sha384", "sha512"])
def test_create_runtime_policy_outputs_convert(alg: str) -> None:
    policy = import_keylime_policy(read(f"{POLICIES}/create-runtime-policy/policy-{alg}"))
    assert all(d.startswith(f"{alg}:") for ds in policy.digests.values() for d in ds)


def test_excludes_stay_regexes() -> None:
    policy = import_keylime_policy(read(f"{VERIFICATION}/runtime_policy_with_excludes.json"))
    assert policy.excludes == ()
    assert "/usr/bin/dd" in policy.exclude_regexes
    assert policy.allows_file("/usr/bin/dd", "sha1:" + "00" * 20)


def test_dropped_features_are_reported() -> None:
    conversion = convert_keylime_policy(
        read(f"{VERIFICATION}/runtime_policy_with_verification_keys.json")
    )
    assert any("verification-keys" in note for note in conversion.notes)
    plain = convert_keylime_policy(read(f"{VERIFICATION}/runtime_policy_test.json"))
    assert plain.notes == ()


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (read(f"{POLICIES}/sign/runtime-policy-bogus.json"), "not JSON"),
        ('{"meta": {"version": 2}}', r"\$\.meta\.version"),
        ('{"meta": {"version": 1}, "digest": {}}', "unknown Keylime policy key"),
        ('{"meta": {"version": 1}, "digests": {"/a": ["abc"]}}', r'\$\.digests\["/a"\]\[0\]'),
        ('{"meta": {"version": 1}, "excludes": ["("]}', r"\$\.excludes\[0\]: not a regex"),
        ('{"meta": {"version": 1}, "ima": {"ignored_keyrings": [1]}}', "ignored_keyrings"),
    ],
)
def test_invalid_keylime_policies(text: str, where: str) -> None:
    with pytest.raises(PolicyInvalid, match=where):
        import_keylime_policy(text)
