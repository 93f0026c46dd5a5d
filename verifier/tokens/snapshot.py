"""What the token service knows about an agent when it issues: its lease, its last passed round
record, its policy; read through ``StatusReader``'s lease and cached for a fraction of a second.

The cache only saves reads; it never decides alone. A snapshot is served for at most
``max_age`` seconds and never past the lease it read (an agent whose lease ends is read again,
and found stale), it is dropped at once when the revocation channel names the agent, and the
token ledger checks the agent row again in the transaction that stores the token
(``verifier.storage.tokens``): still attested, the snapshot's round still its newest passed one,
the lease still running. A token built on a snapshot a newer round superseded is not stored;
the service reads the agent again and builds it once more (``TokenService``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import shapely

from geofence import Zone, ZoneSet
from tpm import TpmPublic
from verifier.core.lease import Lease, derive_lease
from verifier.core.policy import AttestationPolicy
from verifier.core.record_types import EvidenceRecord
from verifier.engine.fleet import FleetConfig, LeaseDefaults, load_fleet
from verifier.storage.hot_state import HotState
from verifier.storage.records import RecordStore
from verifier.storage.sql import VerifiedAgentView, VerifierStore
from verifier.tokens.claims import ZoneFacts

__all__ = ["AgentSnapshot", "Snapshots", "zone_facts"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentSnapshot:
    view: VerifiedAgentView
    lease: Lease
    max_age: dt.timedelta
    policy: AttestationPolicy | None  # None: the stored policy is unusable now
    record: EvidenceRecord | None  # the newest passed round
    record_digest: bytes


def zone_facts(zone: Zone) -> ZoneFacts:
    """A zone as tokens name it; ``polygon_sha256`` is SHA-256 of the geometry as loaded (after
    any repair) in ISO WKB, little endian, 2D."""
    wkb = shapely.to_wkb(zone.geometry, output_dimension=2, byte_order=1, flavor="iso")
    return ZoneFacts(
        id=zone.id,
        name=zone.name,
        version=zone.version,
        polygon_sha256=hashlib.sha256(bytes(wkb)).digest(),
    )


class Snapshots:
    def __init__(
        self,
        *,
        store: VerifierStore,
        records: RecordStore,
        hot: HotState,
        lease: LeaseDefaults,
        zones: ZoneSet | None,
        max_age: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._records = records
        self._hot = hot
        self._lease = lease
        self._zones = zones
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, AgentSnapshot]] = {}
        self._fleet = FleetConfig()
        self._zone_facts: dict[str, ZoneFacts] = {}

    def of(self, agent_id: str) -> AgentSnapshot:
        """The agent's snapshot; ``NotFound`` when it is not under verification."""
        now = self._clock()
        with self._lock:
            cached = self._cache.get(agent_id)
        if cached is not None and now - cached[0] < self._max_age and _lease_runs(cached[1], now):
            return cached[1]
        snapshot = self._read(agent_id, now)
        with self._lock:
            self._cache[agent_id] = (now, snapshot)
        return snapshot

    def forget(self, agent_id: str) -> None:
        with self._lock:
            self._cache.pop(agent_id, None)

    def policy(self, name: str) -> AttestationPolicy | None:
        return self._fleet_config().policies.get(name)

    def ak(self, agent_id: str) -> TpmPublic | None:
        """The AK the registrar proved for the agent (as the workers use it)."""
        return self._fleet_config().aks.get(agent_id)

    def zone(self, zone_id: str) -> ZoneFacts | None:
        if self._zones is None:
            return None
        with self._lock:
            facts = self._zone_facts.get(zone_id)
        if facts is None:
            facts = zone_facts(self._zones.zone(zone_id))
            with self._lock:
                self._zone_facts[zone_id] = facts
        return facts

    def _read(self, agent_id: str, now: float) -> AgentSnapshot:
        view = self._store.get_agent(agent_id)
        policy = self.policy(view.policy_name)
        max_age = self._lease.max_age_of(policy)
        if policy is None:  # an unusable policy: the lease the API shows, from the stored value
            seconds = self._store.policy_max_ages().get(view.policy_name)
            max_age = dt.timedelta(seconds=seconds) if seconds else self._lease.max_age
        lease = derive_lease(
            stored=view.state,
            last_passed_at=view.last_passed_at,
            max_age=max_age,
            now=dt.datetime.fromtimestamp(now, dt.UTC),
        )
        stored = self._records.latest_passed(agent_id)  # the lease is judged by the caller
        return AgentSnapshot(
            view=view,
            lease=lease,
            max_age=max_age,
            policy=policy,
            record=stored.record if stored is not None else None,
            record_digest=stored.digest if stored is not None else b"",
        )

    def _fleet_config(self) -> FleetConfig:
        version = self._hot.config_version()
        with self._lock:
            if version == self._fleet.version:
                return self._fleet
        fleet = load_fleet(self._store, self._zones, version, self._fleet)
        with self._lock:
            self._fleet = fleet
        return fleet


def _lease_runs(snapshot: AgentSnapshot, now: float) -> bool:
    """Whether a cached snapshot may still be served at ``now``: one of an attested agent only
    while the lease it read runs (one of an agent not attested refuses anyway)."""
    if not snapshot.lease.attested:
        return True
    expires = snapshot.lease.expires_at
    return expires is not None and now < expires.timestamp()
