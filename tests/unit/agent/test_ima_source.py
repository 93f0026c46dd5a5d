"""ImaLogSource: entries from an offset, reading only what was appended, a rewritten log
detected and re-indexed, and the kernel's bytes passed through exactly (names that are not
UTF-8, that hold backslashes or newlines, or that imitate another entry)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from agent.ima_source import ImaLogSource
from allowlists.ima.template import encode_entry, parse_entry
from geoattest.errors import ConfigurationError


def _write(path: Path, lines: list[bytes], mode: str = "wb") -> None:
    with path.open(mode) as log:
        log.write(b"".join(line + b"\n" for line in lines))


def _entry(name: bytes, content: bytes = b"x", template: str = "ima-ng") -> bytes:
    path = name.decode("utf-8", "surrogateescape")
    return encode_entry(template=template, path=path, digest=hashlib.sha256(content).digest()).raw


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "ascii_runtime_measurements"
    _write(path, [b"l0", b"l1", b"l2"])
    return path


def test_reads_from_the_offset_and_indexes_only_new_lines(log: Path) -> None:
    source = ImaLogSource(log)
    assert source.read_from(0).lines == [b"l0", b"l1", b"l2"]
    assert source.read_from(2).lines == [b"l2"]
    _write(log, [b"l3", b"l4"], "ab")
    got = source.read_from(3)
    assert (got.offset, got.lines) == (3, [b"l3", b"l4"])
    assert source.indexed_entries == 5
    assert source.read_from(1).lines == [b"l1", b"l2", b"l3", b"l4"]
    assert source.read_from(5).lines == []


def test_a_partial_last_line_waits_for_its_newline(log: Path) -> None:
    source = ImaLogSource(log)
    with log.open("ab") as f:
        f.write(b"l3-half")
    assert source.read_from(0).lines == [b"l0", b"l1", b"l2"]
    with log.open("ab") as f:
        f.write(b"-done\n")
    assert source.read_from(3).lines == [b"l3-half-done"]


def test_offset_past_the_end_returns_everything_from_zero(log: Path) -> None:
    got = ImaLogSource(log).read_from(10)
    assert (got.offset, got.lines) == (0, [b"l0", b"l1", b"l2"])


@pytest.mark.parametrize(
    "rewrite",
    [[b"l0"], [b"x0", b"x1", b"x2", b"x3"], [b"l0", b"l1", b"X2", b"l3"]],
    ids=["shrunk", "replaced-longer", "last-line-changed"],
)
def test_a_rewritten_log_is_reindexed(log: Path, rewrite: list[bytes]) -> None:
    source = ImaLogSource(log)
    source.read_from(0)
    _write(log, rewrite)
    assert source.read_from(0).lines == rewrite
    assert source.indexed_entries == len(rewrite)


def test_missing_log_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read the IMA log"):
        ImaLogSource(tmp_path / "absent").read_from(0)


def test_names_the_kernel_prints_raw_pass_through_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "log"
    entries = [
        _entry(b"/tmp/caf\xe9"),  # Latin-1, not UTF-8
        _entry(b"/tmp/a\\x41\\\\b"),  # backslashes that look like escapes
        _entry(b"/tmp/tab\there\x01\x7f"),
        _entry(b"/tmp/\xed\xa0\x80"),  # an encoded surrogate: not UTF-8 either
    ]
    _write(path, entries)
    assert ImaLogSource(path).read_from(0).lines == entries


def test_a_name_with_newlines_is_one_entry(tmp_path: Path) -> None:
    path = tmp_path / "log"
    before, after = _entry(b"/usr/bin/a"), _entry(b"/usr/bin/b")
    split = _entry(b"/tmp/new\nline\n\nname", template="ima-sig")
    _write(path, [before, split, after])
    source = ImaLogSource(path)
    assert source.read_from(0).lines == [before, split, after]
    assert source.indexed_entries == 3
    assert source.read_from(1).lines == [split, after]
    assert parse_entry(split.decode("utf-8", "surrogateescape")).path == "/tmp/new\nline\n\nname"


def test_a_name_that_imitates_an_entry_cannot_split_its_own(tmp_path: Path) -> None:
    """A local user names a file after an allowed entry's line: still one entry, whose template
    hash covers the whole name, so nothing is hidden and the node is not broken either."""
    path = tmp_path / "log"
    allowed = _entry(b"/usr/bin/ok", b"ok")
    trick = _entry(b"/tmp/x\n" + allowed)
    _write(path, [allowed, trick])
    got = ImaLogSource(path).read_from(0).lines
    assert got == [allowed, trick]
    assert parse_entry(got[1].decode("utf-8", "surrogateescape")).path.endswith("/usr/bin/ok")


def test_lines_the_hash_cannot_settle_are_passed_on_one_by_one(tmp_path: Path) -> None:
    path = tmp_path / "log"
    good = _entry(b"/usr/bin/a")
    tampered = good.replace(b"/usr/bin/a", b"/usr/bin/z")
    _write(path, [tampered, b"garbage", good])
    assert ImaLogSource(path).read_from(0).lines == [tampered, b"garbage", good]
