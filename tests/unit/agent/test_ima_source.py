"""ImaLogSource: entries from an offset, reading only what was appended, and a rewritten log
detected and re-indexed."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.ima_source import ImaLogSource
from geoattest.errors import ConfigurationError


def _write(path: Path, lines: list[str], mode: str = "w") -> None:
    with path.open(mode) as log:
        log.write("".join(line + "\n" for line in lines))


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "ascii_runtime_measurements"
    _write(path, ["l0", "l1", "l2"])
    return path


def test_reads_from_the_offset_and_indexes_only_new_lines(log: Path) -> None:
    source = ImaLogSource(log)
    assert source.read_from(0).lines == ["l0", "l1", "l2"]
    assert source.read_from(2).lines == ["l2"]
    _write(log, ["l3", "l4"], "a")
    got = source.read_from(3)
    assert (got.offset, got.lines) == (3, ["l3", "l4"])
    assert source.indexed_entries == 5
    assert source.read_from(1).lines == ["l1", "l2", "l3", "l4"]
    assert source.read_from(5).lines == []


def test_a_partial_last_line_waits_for_its_newline(log: Path) -> None:
    source = ImaLogSource(log)
    with log.open("a") as f:
        f.write("l3-half")
    assert source.read_from(0).lines == ["l0", "l1", "l2"]
    with log.open("a") as f:
        f.write("-done\n")
    assert source.read_from(3).lines == ["l3-half-done"]


def test_offset_past_the_end_returns_everything_from_zero(log: Path) -> None:
    got = ImaLogSource(log).read_from(10)
    assert (got.offset, got.lines) == (0, ["l0", "l1", "l2"])


@pytest.mark.parametrize(
    "rewrite",
    [["l0"], ["x0", "x1", "x2", "x3"], ["l0", "l1", "X2", "l3"]],
    ids=["shrunk", "replaced-longer", "last-line-changed"],
)
def test_a_rewritten_log_is_reindexed(log: Path, rewrite: list[str]) -> None:
    source = ImaLogSource(log)
    source.read_from(0)
    _write(log, rewrite)
    assert source.read_from(0).lines == rewrite
    assert source.indexed_entries == len(rewrite)


def test_missing_log_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read the IMA log"):
        ImaLogSource(tmp_path / "absent").read_from(0)


def test_non_utf8_paths_survive_as_escapes(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"10 aa ima-ng sha256:bb /bin/\xff\n")
    assert ImaLogSource(path).read_from(0).lines == ["10 aa ima-ng sha256:bb /bin/\\xff"]
