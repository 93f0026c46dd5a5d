"""Each agent's last judged position, cached by its evidence chain's head.

A position changes only with a new evidence record, so the cache keys it by the record count the
agent view carries: a fleet overview decodes a record only for agents that had a round since.
"""

from __future__ import annotations

import threading

from verifier.core.position import NodePosition, position_of
from verifier.storage.fleet_reads import FleetReads

# How many of an agent's newest round records to look through for one with a judged fix (an
# unreachable round has no evidence; the position shown is then the last judged one).
LOOK_BACK = 8


class PositionCache:
    def __init__(self, reads: FleetReads) -> None:
        self._reads = reads
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[int, NodePosition | None]] = {}

    def position(self, agent_id: str, records: int) -> NodePosition | None:
        """The agent's newest judged position as of its record ``records`` (or None)."""
        with self._lock:
            cached = self._cache.get(agent_id)
        if cached is not None and cached[0] == records:
            return cached[1]
        found = None
        for record in self._reads.newest_rounds(agent_id, LOOK_BACK):
            found = position_of(record)
            if found is not None:
                break
        with self._lock:
            self._cache[agent_id] = (records, found)
        return found

    def forget_others(self, agent_ids: set[str]) -> None:
        """Drop agents no longer under verification."""
        with self._lock:
            for gone in set(self._cache) - agent_ids:
                del self._cache[gone]
