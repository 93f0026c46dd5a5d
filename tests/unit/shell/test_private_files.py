"""Owner-only state: what ``geoattest.private_files`` creates and what it refuses."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from geoattest.errors import ConfigurationError
from geoattest.private_files import (
    check_private,
    create_private_file,
    ensure_private_dir,
    load_or_create_secret,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_directories_are_created_0700_even_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        created = ensure_private_dir(tmp_path / "a" / "b")
        assert create_private_file(created / "f", b"x")
    finally:
        os.umask(old)
    assert (_mode(tmp_path / "a"), _mode(created), _mode(created / "f")) == (0o700, 0o700, 0o600)


def test_an_existing_parent_is_left_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    ensure_private_dir(shared / "mine")
    assert _mode(shared) == 0o755


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o666, 0o601])
def test_files_others_can_reach_are_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "key"
    create_private_file(path, b"k")
    path.chmod(mode)
    with pytest.raises(ConfigurationError, match=rf"{path} has mode {mode:04o}.*chmod 600"):
        check_private(path)


@pytest.mark.parametrize("mode", [0o750, 0o705, 0o711])
def test_directories_others_can_reach_are_refused(tmp_path: Path, mode: int) -> None:
    path = ensure_private_dir(tmp_path / "state")
    path.chmod(mode)
    with pytest.raises(ConfigurationError, match=rf"{path} has mode {mode:04o}.*chmod 700"):
        ensure_private_dir(path)


def test_owner_only_paths_pass(tmp_path: Path) -> None:
    path = ensure_private_dir(tmp_path / "state")
    create_private_file(path / "f")
    check_private(path)
    check_private(path / "f")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_a_file_of_another_user_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "theirs"
    create_private_file(path, b"k")
    os.chown(path, 4242, -1)
    with pytest.raises(ConfigurationError, match="belongs to uid 4242"):
        check_private(path)


def test_create_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "f"
    assert create_private_file(path, b"first")
    assert not create_private_file(path, b"second")
    assert path.read_bytes() == b"first"


def test_secret_is_created_once_then_kept(tmp_path: Path) -> None:
    path = tmp_path / "state" / "key"
    first = load_or_create_secret(path, 32)
    assert len(first) == 32
    assert load_or_create_secret(path, 32) == first
    assert (_mode(path.parent), _mode(path)) == (0o700, 0o600)
    other = load_or_create_secret(tmp_path / "other" / "key", 32)
    assert other != first
