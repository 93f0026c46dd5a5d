"""Who is calling the workload socket: the kernel says, the caller never does.

``SO_PEERCRED`` gives the pid, uid and gid of the process that connected. The agent then reads
that process's executable through ``/proc/<pid>/exe`` (the file the process runs, even if it was
replaced or deleted on disk) and hashes it with SHA-256 (up to ``max_bytes``; the hash is cached
by device, inode, size, mtime and ctime, so a binary changed in place is hashed again).

A pid can be reused and a process can ``exec`` another program, so the identity is pinned, and
checked again before any answer (``Caller.check_unchanged``):

- a pidfd (``pidfd_open``) taken at once refers to that very process: once it exits, the pidfd
  is readable, and a new process with the same pid is not it;
- the process's start time (``/proc/<pid>/stat`` field 22) and the device and inode of its
  executable must still be what they were when the request came in.

A process that exits or executes another program between its request and the answer gets
``WorkloadChanged``, not a token. (The last check runs just before the answer is written; a
process that execs in the microseconds after it could still read an answer meant for its
previous program. The executable identity is what SPIFFE-style workload APIs rely on too.)
"""

from __future__ import annotations

import hashlib
import os
import select
import socket
import stat
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass

from geoattest.errors import WorkloadChanged, WorkloadUnidentified

__all__ = ["Caller", "ExecutableHasher", "PeerCredentials", "peer_credentials"]

_UCRED = struct.Struct("3i")
_CHUNK = 1 << 20
MAX_CACHED = 4096


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> PeerCredentials:
    """The connecting process of a Unix stream socket (``SO_PEERCRED``)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError as e:
        raise WorkloadUnidentified(f"no peer credentials on the workload socket: {e}") from e
    pid, uid, gid = _UCRED.unpack(raw)
    if pid <= 0:
        raise WorkloadUnidentified("the kernel gave no pid for the caller")
    return PeerCredentials(pid=pid, uid=uid, gid=gid)


def _start_ticks(pid: int) -> int:
    """Field 22 of ``/proc/<pid>/stat``: when the process started (clock ticks since boot)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    # the command name (field 2) is in parentheses and may hold spaces and parentheses
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[19])


@dataclass(slots=True)
class Caller:
    """One identified caller, pinned by its pidfd until ``close``."""

    credentials: PeerCredentials
    sha256: bytes
    path: str  # what /proc/<pid>/exe points to (informational)
    start_ticks: int
    exe_dev: int
    exe_ino: int
    pidfd: int

    def check_unchanged(self) -> None:
        """``WorkloadChanged`` when the process exited, or runs another executable now."""
        pid = self.credentials.pid
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        if poller.poll(0):
            raise WorkloadChanged(f"process {pid} exited before its answer")
        try:
            started = _start_ticks(pid)
            info = os.stat(f"/proc/{pid}/exe")
        except (OSError, ValueError, IndexError) as e:
            raise WorkloadChanged(f"process {pid} is gone: {e}") from e
        if started != self.start_ticks:
            raise WorkloadChanged(f"pid {pid} is another process now")
        if (info.st_dev, info.st_ino) != (self.exe_dev, self.exe_ino):
            raise WorkloadChanged(f"process {pid} executed another program since its request")

    def close(self) -> None:
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1


class ExecutableHasher:
    """Identifies callers: SHA-256 of their executable, cached by file identity."""

    def __init__(self, *, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._cache: OrderedDict[tuple[int, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def identify(self, credentials: PeerCredentials) -> Caller:
        """Pin and hash the caller. ``WorkloadUnidentified`` when its executable cannot be read
        (another user's process without the privilege, a kernel thread) or is too large;
        ``WorkloadChanged`` when it changed while being read."""
        pid = credentials.pid
        try:
            pidfd = os.pidfd_open(pid)
        except OSError as e:
            raise WorkloadChanged(f"process {pid} is gone: {e}") from e
        try:
            caller = self._identify(credentials, pidfd)
        except BaseException:
            os.close(pidfd)
            raise
        caller.check_unchanged()  # the pid was not reused before the pidfd pinned it
        return caller

    def _identify(self, credentials: PeerCredentials, pidfd: int) -> Caller:
        pid = credentials.pid
        try:
            started = _start_ticks(pid)
            path = os.readlink(f"/proc/{pid}/exe")
            fd = os.open(f"/proc/{pid}/exe", os.O_RDONLY | os.O_CLOEXEC)
        except (OSError, ValueError, IndexError) as e:
            raise WorkloadUnidentified(f"cannot read the executable of process {pid}: {e}") from e
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise WorkloadUnidentified(f"process {pid} runs no regular file")
            if info.st_size > self._max_bytes:
                raise WorkloadUnidentified(
                    f"the executable of process {pid} is {info.st_size} bytes; the agent hashes "
                    f"up to {self._max_bytes}"
                )
            sha256 = self._digest(fd, info)
        finally:
            os.close(fd)
        return Caller(
            credentials=credentials,
            sha256=sha256,
            path=path,
            start_ticks=started,
            exe_dev=info.st_dev,
            exe_ino=info.st_ino,
            pidfd=pidfd,
        )

    def _digest(self, fd: int, info: os.stat_result) -> bytes:
        key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        digest = hashlib.sha256()
        offset = 0
        while chunk := os.pread(fd, _CHUNK, offset):
            digest.update(chunk)
            offset += len(chunk)
        after = os.fstat(fd)
        if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != key[2:] or offset != key[2]:
            raise WorkloadUnidentified("the executable changed while it was hashed")
        value = digest.digest()
        with self._lock:
            self._cache[key] = value
            while len(self._cache) > MAX_CACHED:
                self._cache.popitem(last=False)
        return value
