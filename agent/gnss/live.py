"""``file:PATH?live``: a recorded track replayed as a live receiver, for demos and the dev fleet.

One epoch a second, restamped to the current time (``geofence.restamp``), going back and forth
over the track's epochs so that it never jumps at the turn. The file is read again whenever it
changes (its size or modification time), so a demo can move the node (``geoattest fleet tamper
--teleport``); a missing or empty file makes the receiver silent (``--gnss-off``): no fix, so a
round that asks for location gets ``gnss_unavailable``.

Its kind is ``file``, signed into the evidence like any replay: a production policy refuses it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from geofence import SourceKind
from geofence.nmea import split_lines
from geofence.restamp import epochs, restamped

__all__ = ["LiveReplaySource"]

log = logging.getLogger(__name__)


class LiveReplaySource:
    kind = SourceKind.FILE

    def __init__(
        self,
        path: Path,
        *,
        period_s: float = 1.0,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._path = path
        self._period = period_s
        self._clock = clock
        self._closed = threading.Event()
        self._seen: tuple[int, int] | None = None
        self._epochs: list[list[bytes]] = []

    def lines(self) -> Iterator[bytes]:
        step, direction = 0, 1
        while not self._closed.is_set():
            if self._reload():
                step, direction = 0, 1
            at = self._clock()
            if self._epochs:
                step = min(step, len(self._epochs) - 1)
                for line in self._epochs[step]:
                    yield restamped(line, at)
                if not 0 <= step + direction < len(self._epochs):
                    direction = -direction
                step += direction if len(self._epochs) > 1 else 0
            elapsed = (self._clock() - at).total_seconds()
            self._closed.wait(max(self._period - elapsed, 0.0))

    def close(self) -> None:
        self._closed.set()

    def _reload(self) -> bool:
        """Read the track again if the file changed; True when it did."""
        try:
            info = self._path.stat()
        except OSError:
            if self._epochs:
                log.warning("GNSS track %s is gone: the receiver is silent", self._path)
            self._epochs, self._seen = [], None
            return False
        seen = (info.st_size, info.st_mtime_ns)
        if seen == self._seen:
            return False
        self._seen = seen
        try:
            self._epochs = epochs(split_lines(self._path.read_bytes()))
        except OSError as e:
            log.warning("GNSS track %s unreadable (%s): the receiver is silent", self._path, e)
            self._epochs = []
        log.info("GNSS track %s: %d epoch(s), replayed live", self._path, len(self._epochs))
        return True
