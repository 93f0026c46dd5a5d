"""The per-process cache of agents' last full zone decisions stays bounded and forgets on
request."""

from __future__ import annotations

from geofence.nearby import DecidedAt
from verifier.engine.zone_hints import ZoneHintCache


def _hint(zone_id: str) -> dict[str, DecidedAt]:
    return {zone_id: DecidedAt(zones=None, zone_id=zone_id, lat=0.0, lon=0.0, inside=True,
                               distance_m=1.0)}  # fmt: skip


def test_the_least_recently_stored_agents_leave_first() -> None:
    cache = ZoneHintCache(max_agents=2)
    cache.put("a", _hint("A"))
    cache.put("b", _hint("B"))
    cache.put("a", _hint("A2"))  # a is now the newest
    cache.put("c", _hint("C"))
    assert len(cache) == 2
    assert cache.get("b") is None
    assert cache.get("a") == _hint("A2")
    assert cache.get("c") == _hint("C")


def test_a_round_without_decisions_forgets_the_agent() -> None:
    cache = ZoneHintCache()
    cache.put("a", _hint("A"))
    cache.put("a", {})
    assert cache.get("a") is None
    assert len(cache) == 0
