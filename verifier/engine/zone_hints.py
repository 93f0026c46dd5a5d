"""Each agent's last full zone decisions, kept by the worker process between its rounds.

A cache of ``RoundResult.zone_hints`` (``geofence.nearby``): with it, the zone decision of a node
that has not moved touches no polygon. It is a pure speed-up: a hint is a geometric fact about a
point of the zone set it names, true whoever sent the fix, and it changes no decision, so a
hint lost (another process ran the round, the cache was full, the process restarted) only costs
a full decision. Bounded, so a fleet larger than the bound stays correct, only slower.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping

from geofence.nearby import DecidedAt

MAX_AGENTS = 50_000  # ~ 300 bytes per agent and zone


class ZoneHintCache:
    def __init__(self, max_agents: int = MAX_AGENTS) -> None:
        self._max = max_agents
        self._hints: OrderedDict[str, Mapping[str, DecidedAt]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, agent_id: str) -> Mapping[str, DecidedAt] | None:
        with self._lock:
            return self._hints.get(agent_id)

    def put(self, agent_id: str, hints: Mapping[str, DecidedAt]) -> None:
        with self._lock:
            if not hints:
                self._hints.pop(agent_id, None)
                return
            self._hints[agent_id] = hints
            self._hints.move_to_end(agent_id)
            while len(self._hints) > self._max:
                self._hints.popitem(last=False)

    def __len__(self) -> int:
        return len(self._hints)
