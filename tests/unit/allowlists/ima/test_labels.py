"""Relabelled IMA entries: the template name is not covered by the template hash, so whoever
relays the log can print another one. Each attack keeps a valid template hash and a quoted PCR
10 that the log reproduces; each is refused, and each test fails if its check is removed."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest

from allowlists.ima.labels import label_problem
from allowlists.ima.policy import RuntimePolicy
from allowlists.ima.replay import ImaState, replay_and_check
from allowlists.ima.template import (
    LEGACY_NAME_SIZE,
    build_template_data,
    encode_entry,
    parse_entry,
)
from geoattest.errors import ImaEntryNotAllowed, ImaLogInvalid
from geoattest.pcr_banks import PcrBank

BANKS = (PcrBank.SHA1, PcrBank.SHA256)
EVIL = hashlib.sha256(b"evil payload").digest()
SIGNATURE = bytes.fromhex("030204f3452d23") + bytes(range(64))  # an IMA v2 signature's shape


def pcr10(lines: Sequence[str]) -> dict[PcrBank, bytes]:
    values = {bank: bytes(hashlib.new(bank).digest_size) for bank in BANKS}
    for line in lines:
        entry = parse_entry(line)
        for bank in BANKS:
            values[bank] = hashlib.new(bank, values[bank] + entry.extend_value(bank)).digest()
    return values


def relabel(line: str, template: str) -> str:
    pcr, th, _, rest = line.split(" ", 3)
    return f"{pcr} {th} {template} {rest}"


def judge(lines: Sequence[str], policy: RuntimePolicy, quoted: Sequence[str] | None = None) -> int:
    """Replay ``lines`` against the PCR 10 the *genuine* ``quoted`` lines produce."""
    result = replay_and_check(
        lines,
        state=ImaState.initial(BANKS),
        quoted_pcr10=pcr10(quoted or lines),
        policy=policy,
    )
    return result.consumed


def test_an_ima_sig_entry_relabelled_ima_buf_is_not_judged_as_a_buffer() -> None:
    """A file measurement shown as a buffer would pass ``ignored_keyrings: ["*"]``."""
    genuine = encode_entry(
        template="ima-sig", path="/usr/bin/evil", digest=EVIL, signature=SIGNATURE
    ).line
    forged = relabel(genuine, "ima-buf")
    assert parse_entry(forged).template_hash == parse_entry(genuine).template_hash
    policy = RuntimePolicy(ignored_keyrings=frozenset({"*"}))  # buffers: anything goes
    assert policy.allows_buffer("/usr/bin/evil", f"sha256:{EVIL.hex()}")  # what it would get
    with pytest.raises(ImaEntryNotAllowed, match="not the hash of its buffer"):
        judge([forged], policy, [genuine])


def test_an_empty_file_relabelled_as_an_empty_buffer_is_refused() -> None:
    """An unsigned empty file has the layout and digest of an empty buffer."""
    empty = hashlib.sha256(b"").digest()
    genuine = encode_entry(template="ima-sig", path="/usr/bin/evil", digest=empty).line
    forged = relabel(genuine, "ima-buf")
    policy = RuntimePolicy(ignored_keyrings=frozenset({"*"}))
    with pytest.raises(ImaEntryNotAllowed, match="empty buffer"):
        judge([forged], policy, [genuine])
    # The empty file itself, honestly labelled, is judged as the file it is.
    listed = RuntimePolicy(digests={"/usr/bin/evil": frozenset({f"sha256:{empty.hex()}"})})
    assert judge([genuine], listed) == 1


def test_an_ima_buf_entry_relabelled_ima_sig_is_not_judged_as_a_file() -> None:
    """A key loaded on a keyring, shown as a signed file, would pass a file exclude."""
    certificate = b"0\x82\x01\x0a not an allowed key"
    genuine = encode_entry(
        template="ima-buf",
        path=".evil",
        digest=hashlib.sha256(certificate).digest(),
        buffer=certificate,
    ).line
    forged = relabel(genuine, "ima-sig")
    policy = RuntimePolicy(excludes=("*",), keyrings={".ima": frozenset({"sha256:" + "00" * 32})})
    assert policy.allows_file(".evil", "sha256:" + "11" * 32)  # what it would get as a file
    with pytest.raises(ImaEntryNotAllowed, match="buffer measurement relabelled"):
        judge([forged], policy, [genuine])
    with pytest.raises(ImaEntryNotAllowed, match=r"buffer '\.evil'"):
        judge([genuine], policy)  # and as what it is, the policy does not allow it either


def _legacy_reading(data: bytes, th: bytes) -> str:
    """The legacy ``ima`` line whose template data is ``data``: 20 digest bytes, then the name
    zero-padded to 256 bytes."""
    assert len(data) == 20 + LEGACY_NAME_SIZE
    assert data[-1] == 0
    name = data[20:-1].decode("utf-8", "surrogateescape")
    assert build_template_data(template="ima", path=name, digest=data[:20]) == data
    return f"10 {th.hex()} ima {data[:20].hex()} {name}"


def _long_ng_entry() -> tuple[str, str]:
    """A genuine ima-ng entry whose template data is exactly as long as a legacy entry's, and
    the legacy line that re-presents it with another path."""
    path = "/opt/app/" + "d" * (LEGACY_NAME_SIZE + 20 - 49 - 9)  # 49 bytes of fields + NUL
    genuine = encode_entry(path=path, digest=EVIL)
    data = build_template_data(template="ima-ng", path=path, digest=EVIL)
    return genuine.line, _legacy_reading(data, genuine.template_hash_sha1)


def test_a_long_ima_ng_entry_re_presented_as_legacy_ima_is_refused() -> None:
    genuine, forged = _long_ng_entry()
    fake_path = forged.split(" ", 4)[4]
    assert not fake_path.startswith("/")  # another path: digest bytes, a length, the real path
    # A policy that waves relative names through would pass the fake path, not the real one.
    policy = RuntimePolicy(exclude_regexes=("[^/]",))
    assert not policy.allows_file(genuine.split(" ", 4)[4], f"sha256:{EVIL.hex()}")
    # The fake name holds NUL bytes (the length prefixes of the real fields), which no kernel
    # name does: refused as not a kernel line, whether or not the node logs legacy entries.
    legacy_too = RuntimePolicy(
        templates=frozenset({"ima", "ima-ng", "ima-sig"}), exclude_regexes=("[^/]",)
    )
    for node in (policy, legacy_too):
        with pytest.raises(ImaLogInvalid, match="NUL byte in the name"):
            judge([forged], node, [genuine])


def test_a_legacy_entry_on_a_node_that_does_not_log_legacy_entries_is_refused() -> None:
    """Root adds an IMA rule with ``template=ima``: for a path over 255 bytes the kernel logs the
    bare file name, so ``/x/…/boot_aggregate`` shows as ``boot_aggregate``, which policies
    commonly exclude. No relabelling needed: the template itself must be one the node logs."""
    digest = hashlib.sha1(b"evil payload").digest()  # noqa: S324 - the legacy template's digest
    line = encode_entry(template="ima", path="boot_aggregate", digest=digest, digest_alg="sha1")
    policy = RuntimePolicy(excludes=("boot_aggregate",))
    assert policy.allows_file("boot_aggregate", f"sha1:{digest.hex()}")
    with pytest.raises(ImaEntryNotAllowed, match="template ima is not among the templates"):
        judge([line.line], policy)
    legacy_node = RuntimePolicy(templates=frozenset({"ima"}), excludes=("boot_aggregate",))
    assert judge([line.line], legacy_node) == 1  # where the operator says the node logs it


def test_honest_entries_of_every_template_pass_their_labels() -> None:
    certificate = b"0\x82 a key"
    entries = [
        encode_entry(path="/usr/bin/a", digest=EVIL),
        encode_entry(template="ima-sig", path="/usr/bin/b", digest=EVIL, signature=SIGNATURE),
        encode_entry(template="ima-sig", path="/usr/bin/c", digest=EVIL),
        encode_entry(
            template="ima-buf",
            path=".ima",
            digest=hashlib.sha256(certificate).digest(),
            buffer=certificate,
        ),
    ]
    templates = frozenset({"ima-ng", "ima-sig", "ima-buf"})
    for encoded in entries:
        assert label_problem(parse_entry(encoded.line), templates) is None, encoded.line


def test_an_unknown_digest_algorithm_cannot_clear_an_ambiguous_label() -> None:
    """Where hashlib cannot compute the digest, a signed entry could be a buffer: refused when
    the node logs buffers, judged as a file when it does not."""
    digest = bytes(32)
    line = encode_entry(
        template="ima-sig",
        path="/usr/bin/x",
        digest=digest,
        digest_alg="streebog256",
        signature=SIGNATURE,
    ).line
    entry = parse_entry(line)
    assert label_problem(entry, frozenset({"ima-sig", "ima-buf"})) is not None
    assert label_problem(entry, frozenset({"ima-sig"})) is None
