"""``BootLogFile``: the agent sends the event log file as it is, or nothing (logged once)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from agent.evidence import BootLogFile
from geoattest.settings import Settings


def test_reads_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "binary_bios_measurements"
    path.write_bytes(b"\x00" * 5000)
    assert BootLogFile(path).read() == b"\x00" * 5000


def test_missing_file_gives_no_log_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "absent"
    source = BootLogFile(path)
    with caplog.at_level(logging.WARNING, logger="agent.evidence"):
        assert source.read() is None
        assert source.read() is None
    assert len(caplog.records) == 1
    assert str(path) in caplog.text
    path.write_bytes(b"log")
    assert source.read() == b"log"
    path.unlink()
    with caplog.at_level(logging.WARNING, logger="agent.evidence"):
        assert source.read() is None  # warned again after it had come back
    assert len(caplog.records) == 2


def test_oversized_file_is_not_sent(tmp_path: Path) -> None:
    path = tmp_path / "huge"
    path.write_bytes(b"x" * 101)
    assert BootLogFile(path, max_bytes=100).read() is None
    assert BootLogFile(path, max_bytes=101).read() == b"x" * 101


def test_default_path_is_the_kernel_securityfs_log() -> None:
    assert Settings().boot_log_path == Path("/sys/kernel/security/tpm0/binary_bios_measurements")
    custom = Settings(boot_log_path=Path("/tmp/log.bin"))
    assert custom.boot_log_path == Path("/tmp/log.bin")
