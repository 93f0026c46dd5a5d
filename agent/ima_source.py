"""The IMA measurement list (``ascii_runtime_measurements``), read from entry N on, byte-exact.

The verifier asks for the entries after the last one it verified, every round. Re-reading the
whole list each time would cost O(log size) per round, so the source remembers the byte offset of
every entry it has seen and reads only what was appended since. This also works on securityfs,
where the file reports size 0 and a seek makes the kernel walk the list without copying it.

Entries are the kernel's bytes, unchanged: names are printed raw, so they may hold bytes that
are not UTF-8, backslashes and newlines (``allowlists.ima.template``). An entry whose name holds
a newline spans several lines of the file; ``allowlists.ima.framing`` finds where it ends from
its template hash, so it is indexed (and sent) as one entry. The wire carries the bytes exactly
(``geoattest.wire.ImaWire``).

A log that shrank or was rewritten (a reboot in a test harness, tampering) no longer matches the
last entry indexed: the index is dropped and rebuilt from the start. An offset past the end of
the list means the verifier is ahead of this log (reboot, rewind): the whole list is returned
from entry 0, and the answer's ``offset`` tells the verifier so.
"""

from __future__ import annotations

import itertools
import threading
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from allowlists.ima.framing import split_entries
from geoattest.errors import ConfigurationError

__all__ = ["ImaLines", "ImaLogSource", "MeasurementList"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ImaLines:
    """Entries of the measurement list from entry ``offset`` on: the kernel's bytes, each
    without its final newline."""

    offset: int
    lines: list[bytes]


class MeasurementList(Protocol):
    """Where evidence collection gets IMA entries from (a file here, memory in simulators)."""

    def read_from(self, offset: int) -> ImaLines: ...


class ImaLogSource:
    """Incremental reader of one ascii IMA log file; thread-safe.

    Raises ConfigurationError from ``read_from`` when the file cannot be read (wrong path, IMA
    not enabled, no permission).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._starts = array("Q")  # byte offset of entry i
        self._end = 0  # byte offset just after the last complete entry indexed
        self._last_line = b""  # bytes of the last indexed entry, to detect a rewrite

    @property
    def indexed_entries(self) -> int:
        """How many complete entries the index holds (after the last ``read_from``)."""
        return len(self._starts)

    def read_from(self, offset: int) -> ImaLines:
        """Entries ``offset``… of the current list; from 0 when ``offset`` is past its end."""
        if offset < 0:
            raise ValueError("IMA offset must be >= 0")
        with self._lock:
            try:
                with self.path.open("rb") as log:
                    if not self._index_still_valid(log):
                        self._reset()
                    tail = self._index_new_lines(log)
                    return self._lines_from(log, offset, tail)
            except OSError as e:
                raise ConfigurationError(f"cannot read the IMA log {self.path}: {e}") from e

    def _reset(self) -> None:
        self._starts = array("Q")
        self._end = 0
        self._last_line = b""

    def _index_still_valid(self, log: BinaryIO) -> bool:
        if not self._starts:
            return True
        log.seek(self._starts[-1])
        return log.read(len(self._last_line)) == self._last_line

    def _index_new_lines(self, log: BinaryIO) -> bytes:
        """Index the complete entries after ``_end``; returns the bytes read from ``_end`` on
        (complete lines only: a line still being written is left for the next call; the kernel
        never shows part of an entry)."""
        log.seek(self._end)
        data = log.read()
        complete = data[: data.rfind(b"\n") + 1]
        if not complete:
            return b""
        base, pos = self._end, 0
        for entry in split_entries(complete):
            self._starts.append(base + pos)
            pos += len(entry) + 1
        self._last_line = complete[self._starts[-1] - base :]
        self._end = base + len(complete)
        return complete

    def _lines_from(self, log: BinaryIO, offset: int, tail: bytes) -> ImaLines:
        count = len(self._starts)
        if offset > count:
            offset = 0
        if offset == count:
            return ImaLines(offset=offset, lines=[])
        base = self._starts[offset]
        tail_start = self._end - len(tail)
        if base >= tail_start:
            chunk = tail[base - tail_start :]
        else:
            log.seek(base)
            chunk = log.read(self._end - base)
        starts = [start - base for start in self._starts[offset:]] + [len(chunk)]
        lines = [chunk[a : b - 1] for a, b in itertools.pairwise(starts)]
        return ImaLines(offset=offset, lines=lines)
