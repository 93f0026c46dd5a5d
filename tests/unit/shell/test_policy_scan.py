"""The tree walk of ``policy ima generate`` on real directories: pseudo filesystems skipped,
symbolic links resolved inside ROOT and recorded under their own path, files hashed once."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from geoattest.policy_scan import Mount, PolicyScan, ScanStats, parse_mountinfo, read_mounts


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _scan(
    root: Path, *, mounts: list[Mount] | None = None, skip_pseudo: bool = True
) -> tuple[dict[str, bytes], ScanStats]:
    scan = PolicyScan(
        root,
        alg="sha256",
        is_excluded=lambda _path: False,
        skip_pseudo=skip_pseudo,
        mounts=mounts or [],
    )
    files = dict(scan.files())
    return files, scan.stats


def test_mountinfo_lines_give_mount_points_and_types() -> None:
    text = (
        "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
        "36 27 8:1 / /mnt/with\\040space rw shared:1 - ext4 /dev/sda1 rw\n"
        "37 27 0:30 / /run/user/0 rw,nosuid master:5 - tmpfs tmpfs rw\n"
    )
    assert parse_mountinfo(text) == [
        Mount(point="/proc", fstype="proc"),
        Mount(point="/mnt/with space", fstype="ext4"),
        Mount(point="/run/user/0", fstype="tmpfs"),
    ]


def test_this_machines_proc_is_a_proc_mount() -> None:
    assert Mount(point="/proc", fstype="proc") in read_mounts()


def test_pseudo_trees_and_pseudo_mounts_are_not_walked(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for place in ("proc/1/status", "sys/kernel/x", "dev/null-ish", "run/lock", "mnt/mem/f"):
        _write(root / place, b"volatile")
    _write(root / "usr/bin/tool", b"tool")
    _write(root / "mnt/disk/data", b"data")
    mounts = [
        Mount(point=str(root / "mnt/mem"), fstype="tmpfs"),
        Mount(point=str(root / "mnt/disk"), fstype="ext4"),
        Mount(point=str(root), fstype="tmpfs"),  # ROOT itself on tmpfs is still walked
        Mount(point="/elsewhere", fstype="sysfs"),
    ]
    files, stats = _scan(root, mounts=mounts)
    assert sorted(files) == ["/mnt/disk/data", "/usr/bin/tool"]
    assert sorted(stats.skipped_trees) == [
        "/dev (skipped by default)",
        "/mnt/mem (tmpfs mount)",
        "/proc (skipped by default)",
        "/run (skipped by default)",
        "/sys (skipped by default)",
    ]
    everything, _ = _scan(root, mounts=mounts, skip_pseudo=False)
    assert "/proc/1/status" in everything
    assert "/mnt/mem/f" in everything


def test_links_are_resolved_inside_root_and_recorded_under_their_own_path(tmp_path: Path) -> None:
    root = tmp_path / "root"
    python = _write(root / "usr/bin/python3.11", b"interpreter")
    (root / "usr/bin/python3").symlink_to("python3.11")
    (root / "usr/local/bin").mkdir(parents=True)
    (root / "usr/local/bin/py").symlink_to("/usr/bin/python3")  # absolute: ROOT's /usr, chained
    _write(root / "etc/passwd", b"the image's own")
    (root / "usr/bin/escape").symlink_to("../../../../../../etc/passwd")  # '..' stops at ROOT
    (root / "bin").symlink_to("usr/bin")  # a link to a directory: not expanded
    (root / "usr/bin/dangling").symlink_to("nothing")
    (root / "usr/bin/loop").symlink_to("loop")
    _write(root / "run/thing", b"volatile")
    (root / "usr/bin/volatile").symlink_to("/run/thing")
    files, stats = _scan(root)
    assert files["/usr/bin/python3"] == files["/usr/bin/python3.11"] == _sha256(b"interpreter")
    assert files["/usr/local/bin/py"] == _sha256(b"interpreter")
    assert files["/usr/bin/escape"] == files["/etc/passwd"] == _sha256(b"the image's own")
    assert not any(path.startswith("/bin/") for path in files)
    assert {"/usr/bin/dangling", "/usr/bin/loop", "/usr/bin/volatile"}.isdisjoint(files)
    assert (stats.links, stats.directory_links, stats.unresolved_links) == (3, 1, 3)
    assert stats.files == 2  # the interpreter once, the image's passwd once
    assert python.exists()


def test_hard_links_are_hashed_once_and_recorded_under_each_name(tmp_path: Path) -> None:
    first = _write(tmp_path / "a", b"same inode")
    os.link(first, tmp_path / "b")
    files, stats = _scan(tmp_path)
    assert files == {"/a": _sha256(b"same inode"), "/b": _sha256(b"same inode")}
    assert (stats.files, stats.bytes) == (1, len(b"same inode"))


def test_names_json_cannot_hold_are_counted(tmp_path: Path) -> None:
    _write(tmp_path / "good", b"good")
    fd = os.open(os.fsencode(tmp_path) + b"/bad\xff", os.O_CREAT | os.O_WRONLY, 0o644)
    os.close(fd)
    files, stats = _scan(tmp_path)
    assert list(files) == ["/good"]
    assert stats.bad_names == 1


def test_excluded_trees_are_not_walked(tmp_path: Path) -> None:
    _write(tmp_path / "var/cache/big", b"cache")
    _write(tmp_path / "var/lib/keep", b"keep")
    scan = PolicyScan(tmp_path, alg="sha256", is_excluded=lambda path: path == "/var/cache")
    assert list(dict(scan.files())) == ["/var/lib/keep"]
    assert scan.stats.excluded == 1
