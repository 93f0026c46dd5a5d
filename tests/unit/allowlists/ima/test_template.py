from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from allowlists.ima.framing import parse_log, split_log
from allowlists.ima.template import (
    LEGACY_NAME_SIZE,
    build_template_data,
    encode_entry,
    parse_entry,
    template_hash,
)
from geoattest.errors import ImaLogInvalid
from geoattest.pcr_banks import PcrBank
from tests.unit.allowlists.ima.ima_vectors import (
    RUST_LOG,
    RUST_LOG_PCR10_SHA1,
    read,
    vector_lines,
)


def sha1_replay(lines: list[str]) -> str:
    pcr = bytes(20)
    for number, line in enumerate(lines, start=1):
        entry = parse_entry(line, number)
        pcr = hashlib.sha1(pcr + entry.extend_value(PcrBank.SHA1)).digest()  # noqa: S324 - PCR bank
    return pcr.hex()


def test_real_rust_keylime_log_parses_and_every_template_hash_verifies() -> None:
    entries = parse_log(read(RUST_LOG))
    assert len(entries) == 826
    assert entries[0].path == "boot_aggregate"
    assert entries[2].path == "/bin/sh"
    for entry in entries:
        assert entry.template == "ima-ng"
        assert hashlib.sha1(entry.template_data).digest() == entry.template_hash  # noqa: S324
        assert entry.digest_alg == "sha1"


def test_real_log_replays_to_the_derived_pcr10() -> None:
    assert sha1_replay(split_log(read(RUST_LOG))) == RUST_LOG_PCR10_SHA1


def test_single_boot_aggregate_log_with_sha256_digest() -> None:
    lines = split_log(read("keylime/ima_log/rust-keylime/ima_log.txt"))
    assert parse_entry(lines[0]).digest_alg == "sha256"
    assert sha1_replay(lines) == "703b9083e1f35ae2faf8aee75f0541c709c53c77"


def test_ima_sig_lines_with_and_without_signature() -> None:
    unsigned = [parse_entry(line) for line in vector_lines("measurements")]
    assert all(e.template == "ima-sig" and e.signature is None for e in unsigned)
    assert unsigned[1].path.endswith("usb-common.ko")
    signed = [parse_entry(line) for line in vector_lines("signatures")]
    assert signed[0].path == "/usr/bin/dd"
    assert signed[0].signature is not None
    assert signed[0].signature[:7].hex() == "030204f3452d23"  # IMA v2 sig, keyid f3452d23


def test_ima_sig_line_with_trailing_space_stripped_still_parses() -> None:
    line = vector_lines("measurements")[1]
    assert line.endswith(" ")
    assert parse_entry(line.rstrip(" ")) == parse_entry(line)


def test_ima_buf_keyring_line() -> None:
    entry = parse_entry(vector_lines("keyrings")[0])
    assert entry.template == "ima-buf"
    assert entry.path == ".ima"
    assert entry.buffer is not None
    assert entry.buffer[:2] == b"\x30\x82"  # a DER certificate
    assert hashlib.sha256(entry.buffer).digest() == entry.digest


def test_malformed_log_names_the_line() -> None:
    with pytest.raises(ImaLogInvalid, match="line 1"):
        parse_log(read("keylime/ima_log/rust-keylime/invalid_ima_log.txt"))


def test_tampered_digest_is_a_template_hash_mismatch_naming_the_line() -> None:
    lines = split_log(read(RUST_LOG))
    line = lines[41]
    digest_start = line.index("sha1:") + 5
    flipped = "1" if line[digest_start] != "1" else "2"
    lines[41] = line[:digest_start] + flipped + line[digest_start + 1 :]
    with pytest.raises(ImaLogInvalid, match=r"line 42: template hash mismatch"):
        parse_log("\n".join(lines))


def test_corrupted_signature_size_fails() -> None:
    with pytest.raises(ImaLogInvalid, match="template hash mismatch"):
        parse_entry(vector_lines("bad_signatures")[0])


def test_verification_can_be_skipped_for_inspection() -> None:
    entry = parse_entry(vector_lines("bad_signatures")[0], verify=False)
    assert entry.path == "/usr/bin/zmore"


def test_violation_entries_extend_all_ones() -> None:
    line = encode_entry(path="/var/log/x", digest=bytes(32)).line.split(" ")
    line[1] = "0" * 40
    entry = parse_entry(" ".join(line))
    assert entry.is_violation
    assert entry.extend_value(PcrBank.SHA1) == b"\xff" * 20
    assert entry.extend_value(PcrBank.SHA256) == b"\xff" * 32
    assert template_hash(entry.template_data, PcrBank.SHA256) != b"\xff" * 32


def test_template_hash_per_bank() -> None:
    data = build_template_data(template="ima-ng", path="/bin/true", digest=bytes(32))
    assert template_hash(data, PcrBank.SHA256) == hashlib.sha256(data).digest()
    assert template_hash(data, PcrBank.SHA384) == hashlib.sha384(data).digest()
    with pytest.raises(ValueError, match="unsupported PCR bank"):
        template_hash(data, "md5")  # type: ignore[arg-type]  # a raw string past the type checker is refused at run time too


@pytest.mark.parametrize(
    ("template", "extra"),
    [
        ("ima-ng", {}),
        ("ima-sig", {"signature": b"\x03\x02\x04\x01"}),
        ("ima-sig", {}),
        ("ima-buf", {"buffer": b"kexec cmdline"}),
    ],
)
def test_encode_then_parse_round_trips(template: str, extra: dict[str, bytes]) -> None:
    digest = hashlib.sha256(b"x").digest()
    encoded = encode_entry(
        template=template,
        path="/usr/bin/x",
        digest=digest,
        signature=extra.get("signature"),
        buffer=extra.get("buffer"),
    )
    entry = parse_entry(encoded.line, 7)
    assert entry.line_number == 7
    assert entry.template_data == encoded.template_data
    assert entry.template_hash == encoded.template_hash_sha1
    assert (entry.signature, entry.buffer) == (
        extra.get("signature"),
        extra.get("buffer", b"" if template == "ima-buf" else None),
    )


def test_legacy_ima_template() -> None:
    encoded = encode_entry(template="ima", path="/init", digest=bytes(range(20)), digest_alg="sha1")
    assert len(encoded.template_data) == 20 + LEGACY_NAME_SIZE
    entry = parse_entry(encoded.line)
    assert (entry.template, entry.digest_alg, entry.path) == ("ima", "sha1", "/init")
    with pytest.raises(ValueError, match=PcrBank.SHA1):
        encode_entry(template="ima", path="/init", digest=bytes(32))


@pytest.mark.parametrize(
    "line",
    [
        "",
        "10 abc ima-ng sha256:00 /x",
        "x0 " + "0" * 40 + " ima-ng sha1:" + "0" * 40 + " /x",
        "\u0661\u0660 " + "0" * 40 + " ima-ng sha1:" + "0" * 40 + " /x",
        "10 " + "0" * 40 + " ima-ng sha1" + "0" * 40 + " /x",
        "10 " + "0" * 40 + " ima-ng md4:" + "0" * 32 + " /x",
        "10 " + "0" * 40 + " ima-ng sha1:" + "0" * 38 + " /x",
        "10 " + "0" * 40 + " ima-ng sha1:" + "0" * 40 + " ",
        "10 " + "0" * 40 + " ima-ngv2 ima:sha1:" + "0" * 40 + " /x",
        "10 " + "0" * 40 + " ima-sig sha1:" + "0" * 40 + " /x 0g",
        "10 " + "0" * 38 + "\t0 ima-ng sha1:" + "0" * 40 + " /x",
    ],
)
def test_malformed_lines_raise_log_invalid(line: str) -> None:
    with pytest.raises(ImaLogInvalid, match=r"^line 3: "):
        parse_entry(line, 3)


def test_split_log_keeps_spaces_and_drops_only_the_final_newline() -> None:
    assert split_log("a \nb\n") == ["a ", "b"]
    assert split_log("a\n\nb") == ["a", "", "b"]


@given(st.text(max_size=300))
def test_parser_raises_only_log_invalid_on_random_text(text: str) -> None:
    with contextlib.suppress(ImaLogInvalid):
        parse_log(text)


_TOKENS = st.sampled_from(
    ["10", "0" * 40, "ima-ng", "ima-sig", "ima-buf", "ima", "sha1:" + "0" * 40, "/x", "", "ff"]
)


@given(st.lists(_TOKENS | st.text(max_size=8), max_size=7))
def test_parser_raises_only_log_invalid_on_plausible_tokens(tokens: list[str]) -> None:
    with contextlib.suppress(ImaLogInvalid):
        parse_entry(" ".join(tokens))


@given(
    name=st.binary(min_size=1, max_size=400).filter(lambda b: b"\0" not in b),
    digest=st.binary(min_size=32, max_size=32),
    template=st.sampled_from(["ima-ng", "ima-sig"]),
)
def test_any_kernel_name_round_trips(name: bytes, digest: bytes, template: str) -> None:
    """Any bytes but NUL (not UTF-8, backslashes, newlines): what the kernel writes, with each
    space turned into "_" as the kernel does, parses back byte for byte with its hash."""
    path = name.decode("utf-8", "surrogateescape")
    encoded = encode_entry(template=template, path=path, digest=digest, signature=b"\x03\x02")
    entry = parse_entry(encoded.line)
    assert entry.path.encode("utf-8", "surrogateescape") == name.replace(b" ", b"_")
    assert entry.digest == digest
    assert encoded.raw == encoded.line.encode("utf-8", "surrogateescape")


def test_a_name_with_a_nul_byte_is_refused() -> None:
    """The relabelled legacy entry needs one (its length prefixes hold zeros); no kernel name
    holds one."""
    line = encode_entry(path="/bin/x", digest=bytes(32)).line
    with pytest.raises(ImaLogInvalid, match="NUL byte in the name"):
        parse_entry(line.replace("/bin/x", "/bin/\0x"), verify=False)
    with pytest.raises(ValueError, match="cannot be written"):
        encode_entry(path="/bin/\0x", digest=bytes(32))
