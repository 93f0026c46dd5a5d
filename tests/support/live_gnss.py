"""A live GNSS receiver for end-to-end tests: real NMEA captures fed to a location provider one
epoch a second, restamped to now; and the captures the e2e tests use."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence

from agent.location import LocationProvider
from geofence.nmea import split_lines
from geofence.restamp import epochs, restamped, time_of
from tests.paths import vector


class LiveReceiver:
    """Feeds a provider one epoch a second, restamped to now, going back and forth over the
    chosen epochs (an honest track: no jumps at the turn); ``switch`` changes the capture."""

    def __init__(self, provider: LocationProvider, epochs: Sequence[list[bytes]]) -> None:
        self._provider = provider
        self._epochs = list(epochs)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-gnss", daemon=True)
        self._thread.start()

    def switch(self, epochs: Sequence[list[bytes]]) -> None:
        with self._lock:
            self._epochs = list(epochs)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        step, direction = 0, 1
        while not self._stop.is_set():
            at = dt.datetime.now(dt.UTC)
            with self._lock:
                chosen = self._epochs
            step %= len(chosen)
            for line in chosen[step]:
                self._provider.feed(restamped(line, at))
            if not 0 <= step + direction < len(chosen):
                direction = -direction
            step += direction if len(chosen) > 1 else 0
            self._stop.wait(1.0 - (dt.datetime.now(dt.UTC) - at).total_seconds() % 1.0)


def black_forest() -> list[list[bytes]]:
    """NaviLock NL-8002U near Schramberg, DE: the five epochs of one stretch of road (the
    capture's next epoch is 20 minutes and 700 m later), with the receiver banner."""
    all_epochs = epochs(split_lines(vector("nmea/nl2008u.log").read_bytes()))
    banner = [line for line in all_epochs[0] if time_of(line) is None]
    moving = all_epochs[2:7]
    return [banner + moving[0], *moving[1:]]


def loire_valley() -> list[list[bytes]]:
    """ST Teseo LIV4F, static at La Ville-aux-Dames (Indre-et-Loire), FR."""
    return epochs(split_lines(vector("nmea/st-teseo-liv4f.log").read_bytes()))
