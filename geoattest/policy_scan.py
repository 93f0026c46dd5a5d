"""Walk a node's file tree for ``geoattest policy ima generate``: what its IMA could measure.

ROOT stands for the node's ``/`` (the running system, or a mounted image); every path is
recorded as the node sees it, ``/`` + its path relative to ROOT.

- **Pseudo filesystems** are not walked unless asked: ``/proc``, ``/sys``, ``/dev`` and ``/run``
  under ROOT, and every mount point under ROOT whose filesystem type is a pseudo or memory
  filesystem (``PSEUDO_FS_TYPES``, from ``/proc/self/mountinfo``). The kernel's default IMA
  policy does not measure them either, and ``/proc`` and ``/sys`` hold files that never end.
- **Unreadable** files and directories are counted, with the first few named, never fatal.
- **Symbolic links**: IMA logs the path of the file it opened, the link resolved (``d_path``), so
  the target is recorded under its own path by the walk. A link to a regular file is recorded as
  well, under the link's path with the target's digest, since that is the path a process runs it
  by (``/usr/bin/python3``): it allows no content the target's entry does not. Links are resolved
  inside ROOT (absolute targets start at ROOT, ``..`` stops there), as on the node. Links to
  directories are not expanded (``/bin -> usr/bin`` would double the policy); links that dangle,
  loop or lead into a skipped tree are counted.
- Each file is hashed once: hard links and link targets share a digest by inode.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

PSEUDO_FS_TYPES = frozenset(
    {
        "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts",
        "devtmpfs", "efivarfs", "fuse.lxcfs", "fusectl", "hugetlbfs", "mqueue", "nsfs", "proc",
        "pstore", "ramfs", "rpc_pipefs", "securityfs", "selinuxfs", "smackfs", "sysfs", "tmpfs",
        "tracefs",
    }
)  # fmt: skip
PSEUDO_PATHS = ("/proc", "/sys", "/dev", "/run")
MAX_SYMLINK_HOPS = 40  # Linux's limit (ELOOP)
EXAMPLES = 5  # unreadable paths named in the report
MOUNTINFO = Path("/proc/self/mountinfo")


@dataclass(frozen=True, slots=True)
class Mount:
    point: str  # absolute path on this machine
    fstype: str


def parse_mountinfo(text: str) -> list[Mount]:
    """Mount points and filesystem types of ``/proc/<pid>/mountinfo`` text (octal escapes
    undone)."""
    mounts = []
    for line in text.splitlines():
        fields = line.split(" ")
        if "-" not in fields[6:]:
            continue
        separator = fields.index("-", 6)
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[4])
        mounts.append(Mount(point=point, fstype=fields[separator + 1]))
    return mounts


def read_mounts(path: Path = MOUNTINFO) -> list[Mount]:
    """This process's mounts; none where there is no mountinfo (not Linux)."""
    try:
        return parse_mountinfo(path.read_text(encoding="utf-8", errors="surrogateescape"))
    except OSError:
        return []


@dataclass(slots=True)
class ScanStats:
    """What a scan did, for the progress line and the final report."""

    files: int = 0  # regular files hashed
    bytes: int = 0
    links: int = 0  # links to regular files recorded under their own path
    unresolved_links: int = 0  # dangling, looping, or into a skipped tree
    directory_links: int = 0
    excluded: int = 0
    unreadable: int = 0
    unreadable_examples: list[str] = field(default_factory=list)
    bad_names: int = 0  # names that are not UTF-8 (JSON cannot hold them)
    skipped_trees: list[str] = field(default_factory=list)  # "path (why)"

    def unreadable_path(self, path: str, error: OSError) -> None:
        self.unreadable += 1
        if len(self.unreadable_examples) < EXAMPLES:
            self.unreadable_examples.append(f"{path}: {error.strerror or error}")


class PolicyScan:
    """One walk of ROOT; ``files()`` yields ``(path as the node sees it, digest)``."""

    def __init__(
        self,
        root: Path,
        *,
        alg: str,
        is_excluded: Callable[[str], bool],
        skip_pseudo: bool = True,
        mounts: Iterable[Mount] = (),
        on_file: Callable[[ScanStats], None] = lambda _stats: None,
    ) -> None:
        self._root = str(root.resolve())
        self._alg = alg
        self._is_excluded = is_excluded
        self._on_file = on_file
        self._digests: dict[tuple[int, int], bytes] = {}
        self._skipped: dict[str, str] = {}  # node path -> why
        if skip_pseudo:
            self._skipped = {path: "skipped by default" for path in PSEUDO_PATHS}
            for mount in mounts:
                node_path = self._node_path(mount.point)
                if mount.fstype in PSEUDO_FS_TYPES and node_path not in (None, "/"):
                    self._skipped.setdefault(node_path, f"{mount.fstype} mount")
        self.stats = ScanStats()

    def files(self) -> Iterator[tuple[str, bytes]]:
        for directory, dirs, names in os.walk(self._root, onerror=self._unlistable):
            dirs[:] = sorted(d for d in dirs if self._descend(os.path.join(directory, d)))
            for name in sorted(names):
                yield from self._entry(os.path.join(directory, name))

    def _node_path(self, full: str) -> str | None:
        """``full`` as the node sees it, or None when it is not under ROOT."""
        relative = os.path.relpath(full, self._root)
        if relative == ".":
            return "/"
        if relative.startswith(".." + os.sep) or relative == "..":
            return None
        return "/" + relative.replace(os.sep, "/")

    def _full(self, node_path: str) -> str:
        return os.path.join(self._root, node_path.lstrip("/"))

    def _unlistable(self, error: OSError) -> None:
        self.stats.unreadable_path(self._node_path(str(error.filename)) or "?", error)

    def _descend(self, full: str) -> bool:
        node_path = self._node_path(full) or full
        if os.path.islink(full):
            self.stats.directory_links += 1
            return False
        why = self._skipped.get(node_path)
        if why is not None:
            self.stats.skipped_trees.append(f"{node_path} ({why})")
            return False
        if self._is_excluded(node_path):  # a whole excluded tree is not hashed
            self.stats.excluded += 1
            return False
        return True

    def _entry(self, full: str) -> Iterator[tuple[str, bytes]]:
        node_path = self._node_path(full) or full
        try:
            node_path.encode("utf-8")
        except UnicodeEncodeError:
            self.stats.bad_names += 1
            return
        if self._is_excluded(node_path):
            self.stats.excluded += 1
            return
        try:
            info = os.lstat(full)
        except OSError as e:
            self.stats.unreadable_path(node_path, e)
            return
        if stat.S_ISLNK(info.st_mode):
            target = self._link_target(node_path)
            if target is None:
                self.stats.unresolved_links += 1
                return
            full, info = target
            self.stats.links += 1
        elif not stat.S_ISREG(info.st_mode):
            return  # sockets, FIFOs, devices: never executed or mapped
        digest = self._digest(full, info, node_path)
        if digest is not None:
            yield node_path, digest
            self._on_file(self.stats)

    def _link_target(self, node_path: str) -> tuple[str, os.stat_result] | None:
        """The regular file a link at ``node_path`` leads to inside ROOT, or None."""
        resolved = self._resolve(node_path)
        if resolved is None or self._in_skipped_tree(resolved):
            return None
        full = self._full(resolved)
        try:
            info = os.stat(full)
        except OSError:
            return None
        return (full, info) if stat.S_ISREG(info.st_mode) else None

    def _resolve(self, node_path: str) -> str | None:
        """Resolve every link in ``node_path`` with ROOT as ``/``; None if it dangles or loops."""
        pending = deque(node_path.split("/"))
        resolved: list[str] = []
        hops = 0
        while pending:
            part = pending.popleft()
            if part in ("", "."):
                continue
            if part == "..":
                if resolved:
                    resolved.pop()
                continue
            full = self._full("/".join([*resolved, part]))
            try:
                if not os.path.islink(full):
                    resolved.append(part)
                    continue
                link = os.readlink(full)
            except OSError:
                return None
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                return None
            if link.startswith("/"):
                resolved = []
            pending.extendleft(reversed(link.split("/")))
        return "/" + "/".join(resolved)

    def _in_skipped_tree(self, node_path: str) -> bool:
        return any(node_path == top or node_path.startswith(top + "/") for top in self._skipped)

    def _digest(self, full: str, info: os.stat_result, node_path: str) -> bytes | None:
        key = (info.st_dev, info.st_ino)
        digest = self._digests.get(key)
        if digest is not None:
            return digest
        try:
            with open(full, "rb") as f:
                digest = hashlib.file_digest(f, self._alg).digest()
        except OSError as e:
            self.stats.unreadable_path(node_path, e)
            return None
        self._digests[key] = digest
        self.stats.files += 1
        self.stats.bytes += info.st_size
        return digest
