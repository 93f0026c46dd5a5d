from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from allowlists.ima.policy import (
    RuntimePolicy,
    dump_runtime_policy,
    generate_policy,
    parse_runtime_policy,
)
from geoattest.errors import PolicyInvalid

SHA256 = "sha256:" + "ab" * 32
SHA1 = "sha1:" + "cd" * 20


def doc(**fields: object) -> str:
    return json.dumps({"version": 2, **fields})


def test_parse_full_document_and_round_trip() -> None:
    text = doc(
        meta={"generator": "test"},
        digests={"/usr/bin/dd": [SHA256, SHA1], "boot_aggregate": [SHA1]},
        excludes=["/tmp/*"],
        exclude_regexes=["/var/log/"],
        keyrings={".ima": [SHA256]},
        ima_buf={"kexec-cmdline": [SHA256]},
        ignored_keyrings=[".builtin_trusted_keys"],
    )
    policy = parse_runtime_policy(text)
    assert policy.digests["/usr/bin/dd"] == frozenset({SHA256, SHA1})
    assert policy.meta["generator"] == "test"
    again = parse_runtime_policy(dump_runtime_policy(policy))
    assert again == policy
    assert dump_runtime_policy(again) == dump_runtime_policy(policy)


def test_minimal_document_is_an_empty_policy() -> None:
    policy = parse_runtime_policy('{"version": 1}')
    assert not policy.allows_file("/bin/sh", SHA256)
    assert not policy.allows_buffer(".ima", SHA256)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("{", r"not JSON: line 1 column 2"),
        ("[]", "top level must be a JSON object"),
        ('{"version": 3}', r"\$\.version: must be one of 1, 2, got 3"),
        ('{"version": true}', r"\$\.version: must be one of 1, 2, got True"),
        ('{"version": 1, "digest": {}}', r"\$: unknown key\(s\) 'digest'"),
        (doc(templates=["ima-ngv2"]), r"\$\.templates: unsupported template\(s\) 'ima-ngv2'"),
        (doc(templates=[]), r"\$\.templates: name at least one template"),
        (doc(templates=["ima-ng", "ima-ng"]), r"\$\.templates: a template is listed twice"),
        (doc(templates="ima-ng"), r"\$\.templates: expected a list"),
        (
            doc(templates=["ima-ng"], keyrings={".ima": [SHA256]}),
            r"\$\.templates: keyrings, ima_buf or ignored_keyrings allow buffer measurements",
        ),
        (doc(excludes=["/a**b"]), r"\$\.excludes\[0\]: '\*\*' must be a whole path segment"),
        (doc(excludes=["/[z-a]"]), r"\$\.excludes\[0\]: not a glob"),
        (doc(digests={"/a": ["sha256:00"]}), r'\$\.digests\["/a"\]\[0\]: a sha256 digest has 64'),
        (doc(digests={"/a": [SHA1, "AB" * 32]}), r'\$\.digests\["/a"\]\[1\]: expected lowercase'),
        (doc(digests={"/a": ["md4:" + "00" * 16]}), r'\$\.digests\["/a"\]\[0\]: unknown digest'),
        (doc(digests={"/a": SHA1}), r'\$\.digests\["/a"\]: expected a list'),
        (doc(digests={"/a": [1]}), r'\$\.digests\["/a"\]\[0\]: expected an .alg:hex. string'),
        (doc(digests={"": [SHA1]}), r'\$\.digests\[""\]: empty name'),
        (doc(digests=[]), r"\$\.digests: expected an object"),
        (doc(keyrings={".ima": ["x"]}), r'\$\.keyrings\["\.ima"\]\[0\]'),
        (doc(ima_buf={"k": [SHA1, 2]}), r'\$\.ima_buf\["k"\]\[1\]'),
        (doc(excludes=["/tmp", ""]), r"\$\.excludes\[1\]: expected a non-empty string"),
        (doc(exclude_regexes=["("]), r"\$\.exclude_regexes\[0\]: not a regex"),
        (doc(ignored_keyrings=".ima"), r"\$\.ignored_keyrings: expected a list"),
        (doc(meta={"a": 1}), r"\$\.meta: expected an object of strings"),
        ('{"version": 1, "version": 1}', "duplicate key 'version'"),
    ],
)
def test_invalid_documents_name_the_location(text: str, where: str) -> None:
    with pytest.raises(PolicyInvalid, match=where):
        parse_runtime_policy(text)


@pytest.mark.parametrize(
    "digests",
    [
        {"/a": [SHA256, "sha256:" + "AB" * 32]},  # uppercase hex
        {"/a": [SHA256, "sha256:" + "ab" * 31]},  # short
        {"/a": [SHA256 + "\n" + SHA256]},  # one item that reads as two lines
        {"/a": [SHA256 + "\n"]},
        {"/a": [SHA256], "": [SHA256]},
        {"/a": [SHA256], "/b": SHA256},
        {"/a": [SHA256, None]},
    ],
)
def test_sha256_only_tables_are_checked_as_strictly_as_any_other(
    digests: dict[str, object],
) -> None:
    """The one-pass check of all-sha256 tables refuses what the per-entry check refuses."""
    with pytest.raises(PolicyInvalid, match=r"\$\.digests\["):
        parse_runtime_policy(doc(digests=digests))


def test_sha256_only_and_mixed_tables_parse_to_the_same_sets() -> None:
    table = {f"/f{i}": [f"sha256:{i:064x}"] for i in range(50)} | {"/e": []}
    mixed = table | {"/s": [SHA1]}
    plain = parse_runtime_policy(doc(digests=table)).digests
    assert plain == {name: frozenset(values) for name, values in table.items()}
    assert parse_runtime_policy(doc(digests=mixed)).digests == {
        name: frozenset(values) for name, values in mixed.items()
    }


def test_file_allowed_by_listed_digest_only() -> None:
    policy = RuntimePolicy(digests={"/usr/bin/dd": frozenset({SHA256})})
    assert policy.allows_file("/usr/bin/dd", SHA256)
    assert policy.allows_file("/usr/bin/dd", SHA256.upper().replace("SHA256", "sha256"))
    assert not policy.allows_file("/usr/bin/dd", SHA1)
    assert not policy.allows_file("/usr/bin/ddx", SHA256)


def test_glob_excludes_match_whole_segments() -> None:
    policy = RuntimePolicy(excludes=("/tmp/*", "/var/lib/[ab]?", "/var/log/**", "/opt/**/cache"))
    assert policy.allows_file("/tmp/x", SHA1)
    assert policy.allows_file("/tmp/caf\udce9", SHA1)  # a name that is not UTF-8
    assert policy.allows_file("/tmp/a\\b", SHA1)  # a backslash is a character like any other
    assert policy.allows_file("/tmp/a\nb", SHA1)  # so is a newline
    assert not policy.allows_file("/tmp/x/y", SHA1)  # "*" stays within its segment
    assert policy.allows_file("/var/lib/ax", SHA1)
    assert not policy.allows_file("/var/lib/cx", SHA1)
    assert not policy.allows_file("/var/lib/a/", SHA1)
    assert policy.allows_file("/var/log/a", SHA1)
    assert policy.allows_file("/var/log/a/b/c", SHA1)  # "**" spans segments
    assert not policy.allows_file("/var/log", SHA1)
    assert not policy.allows_file("/var/logs/a", SHA1)
    assert policy.allows_file("/opt/cache", SHA1)
    assert policy.allows_file("/opt/a/b/cache", SHA1)
    assert not policy.allows_file("/opt/a/cached", SHA1)
    assert not policy.allows_file("x/tmp/y", SHA1)


def test_glob_sets_never_match_a_slash() -> None:
    policy = RuntimePolicy(excludes=("/a[!b]c", "/d[.-0]e", "/f[]]g", "/h[*]"))
    assert policy.allows_file("/axc", SHA1)
    assert not policy.allows_file("/a/c", SHA1)
    assert not policy.allows_file("/d/e", SHA1)  # "/" lies in the range ".-0"
    assert policy.allows_file("/d.e", SHA1)
    assert policy.allows_file("/f]g", SHA1)
    assert policy.allows_file("/h*", SHA1)
    assert not policy.allows_file("/hx", SHA1)


def test_excludes_never_match_a_sibling_with_the_same_prefix() -> None:
    """Attack: ``/tmpfoo/evil`` under a ``/tmp/*`` exclude (glob in v1 and v2 alike)."""
    for version in (1, 2):
        policy = RuntimePolicy(version=version, excludes=("/tmp/*",))
        assert not policy.allows_file("/tmpfoo", SHA1)
        assert not policy.allows_file("/tmpfoo/evil", SHA1)


@pytest.mark.parametrize(
    "path",
    [
        "/tmp/../usr/bin/evil",
        "/tmp/./evil",
        "/tmp/x/..",
        "/tmp//evil",
        "/tmp/evil/",
        "tmp/evil",
        "..",
        ".",
        "",
    ],
)
def test_paths_not_in_normal_form_are_never_excluded(path: str) -> None:
    """Attack: ``/tmp/../usr/bin/evil`` under ``/tmp/*`` (and regexes, and v1 globs, and
    ``/**``). The kernel never logs such a path: it logs the canonical one."""
    for policy in (
        RuntimePolicy(excludes=("/tmp/**", "/**", "**", "*")),
        RuntimePolicy(version=1, excludes=("/tmp/*", "*")),
        RuntimePolicy(exclude_regexes=("/tmp", ".*")),
    ):
        assert not policy.allows_file(path, SHA1), (policy.excludes, policy.exclude_regexes)
    # The digest table is not an exclude: an exact listing is what it is.
    assert RuntimePolicy(digests={path: frozenset({SHA1})}).allows_file(path, SHA1)


def test_version_1_globs_keep_their_fnmatch_meaning() -> None:
    policy = parse_runtime_policy('{"version": 1, "excludes": ["/tmp/*", "/opt/a*b"]}')
    assert policy.version == 1
    assert policy.allows_file("/tmp/x/y", SHA1)  # "*" crossed "/" in version 1
    assert policy.allows_file("/opt/a/x/b", SHA1)
    assert not policy.allows_file("/tmp/../etc/shadow", SHA1)  # the normal-form rule applies
    assert dump_runtime_policy(policy).startswith('{\n "version": 1,')  # kept as written


def test_templates_default_to_file_templates_and_buffers_when_allowed() -> None:
    assert parse_runtime_policy(doc()).templates == {"ima-ng", "ima-sig"}
    with_buffers = parse_runtime_policy(doc(keyrings={".ima": [SHA256]}))
    assert with_buffers.templates == {"ima-ng", "ima-sig", "ima-buf"}
    legacy = parse_runtime_policy(doc(templates=["ima"]))
    assert legacy.templates == {"ima"}
    assert legacy.logs("ima")
    assert not legacy.logs("ima-ng")
    assert json.loads(dump_runtime_policy(with_buffers))["templates"] == [
        "ima-buf",
        "ima-ng",
        "ima-sig",
    ]


def test_exclude_regexes_match_at_the_start_like_keylime() -> None:
    policy = RuntimePolicy(exclude_regexes=("/opt/.*\\.log", "boot_aggregate"))
    assert policy.allows_file("/opt/a/b.log", SHA1)
    assert policy.allows_file("boot_aggregate", SHA1)
    assert policy.allows_file("boot_aggregate_x", SHA1)  # re.match: prefix semantics
    assert not policy.allows_file("/x/opt/b.log", SHA1)


def test_buffers_keyrings_ima_buf_and_ignored() -> None:
    policy = RuntimePolicy(
        keyrings={".ima": frozenset({SHA256})},
        ima_buf={"kexec-cmdline": frozenset({SHA1})},
        ignored_keyrings=frozenset({".builtin_trusted_keys"}),
        excludes=("*",),
    )
    assert policy.allows_buffer(".ima", SHA256)
    assert not policy.allows_buffer(".ima", SHA1)  # excludes never apply to buffers
    assert policy.allows_buffer("kexec-cmdline", SHA1)
    assert not policy.allows_buffer("kexec-cmdline", SHA256)
    assert policy.allows_buffer(".builtin_trusted_keys", SHA1)
    assert not policy.allows_buffer(".platform", SHA1)


def test_ignore_all_keyrings_does_not_rescue_a_listed_name() -> None:
    policy = RuntimePolicy(
        keyrings={".ima": frozenset({SHA256})}, ignored_keyrings=frozenset({"*"})
    )
    assert policy.allows_buffer(".platform", SHA1)
    assert not policy.allows_buffer(".ima", SHA1)


def test_generate_policy() -> None:
    policy = generate_policy(
        [("/bin/a", bytes(32)), ("/bin/a", bytes([1]) * 32), ("/bin/b", bytes(32))],
        excludes=["/tmp/*"],
        boot_aggregate=[SHA1],
        meta={"root": "/srv/image"},
    )
    assert policy.digests["/bin/a"] == {"sha256:" + "00" * 32, "sha256:" + "01" * 32}
    assert policy.allows_file("boot_aggregate", SHA1)
    assert policy.allows_file("/tmp/q", SHA1)
    assert parse_runtime_policy(dump_runtime_policy(policy)) == policy
    with pytest.raises(PolicyInvalid, match="/bin/c: a sha256 digest has 32 bytes"):
        generate_policy([("/bin/c", bytes(20))])
    with pytest.raises(PolicyInvalid, match="unknown digest algorithm"):
        generate_policy([], alg="crc32")


@given(st.text(max_size=200))
def test_parser_raises_only_policy_invalid_on_random_text(text: str) -> None:
    with contextlib.suppress(PolicyInvalid):
        parse_runtime_policy(text)
