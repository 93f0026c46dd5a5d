"""The fleet as a worker process sees it: agents, AKs, policies, cached per configuration version.

Workers cache agents, their keys and parsed policies, and reload them when the configuration
version in Redis moves (an operator changed something), so a changed policy takes effect at the
next round without a database read per round. A stored policy that no longer parses (written by
another version, or an edit outside the API) is kept out with its reason: its agents are not
judged, and the watchdog names ``policy_unusable`` when their leases run out.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from geoattest.errors import GeoattestError
from geofence import GnssReceiver, ZoneSet
from tpm import TpmPublic, parse_tpm2b_public
from verifier.core.identity import enrolled_receiver
from verifier.core.lease import default_max_age
from verifier.core.policy import AttestationPolicy, policy_from_document
from verifier.storage.sql import AgentTarget, VerifierStore

log = logging.getLogger(__name__)


@dataclass(slots=True)
class FleetConfig:
    version: int = -1
    targets: dict[str, AgentTarget] = field(default_factory=dict)
    aks: dict[str, TpmPublic] = field(default_factory=dict)
    policies: dict[str, AttestationPolicy] = field(default_factory=dict)
    unusable: dict[str, str] = field(default_factory=dict)  # policy name -> why
    location_keys: dict[str, TpmPublic] = field(default_factory=dict)
    broken_agents: dict[str, str] = field(default_factory=dict)  # agent id -> why (bad keys)
    receivers: dict[str, GnssReceiver] = field(default_factory=dict)  # enrolled GNSS receivers


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseDefaults:
    """The verifier-wide lease when a policy does not set ``max_age_seconds``."""

    max_age: dt.timedelta

    @classmethod
    def of(cls, *, interval: float, round_deadline: float, override: float | None) -> LeaseDefaults:
        if override is not None:
            return cls(max_age=dt.timedelta(seconds=override))
        return cls(max_age=default_max_age(interval=interval, round_deadline=round_deadline))

    def max_age_of(self, policy: AttestationPolicy | None) -> dt.timedelta:
        if policy is not None and policy.max_age is not None:
            return policy.max_age
        return self.max_age


def load_fleet(store: VerifierStore, zones: ZoneSet | None, version: int) -> FleetConfig:
    config = FleetConfig(version=version, targets=store.targets())
    for stored in store.list_policies():
        try:
            config.policies[stored.name] = policy_from_document(
                stored.name, stored.version, stored.document, zones, digest=stored.digest
            )
        except GeoattestError as e:  # validated when written; still never trusted on reload
            log.error("policy %s unusable: %s", stored.name, e.message)
            config.unusable[stored.name] = e.message
        except Exception as e:  # a bug on a stored document: the same, and logged in full
            log.exception("policy %s unusable", stored.name)
            config.unusable[stored.name] = f"the policy could not be loaded ({type(e).__name__})"
    for agent_id, target in config.targets.items():
        try:
            config.aks[agent_id] = parse_tpm2b_public(target.ak_public)
            if target.location_key_public is not None:
                config.location_keys[agent_id] = parse_tpm2b_public(target.location_key_public)
            if target.gnss_receiver is not None:
                config.receivers[agent_id] = enrolled_receiver(target.gnss_receiver)
        except GeoattestError as e:
            log.error("agent %s: stored keys unusable: %s", agent_id, e.message)
            config.broken_agents[agent_id] = e.message
        except ValueError as e:  # a stored receiver no version of us wrote: never guessed at
            log.error("agent %s: stored GNSS receiver unusable: %s", agent_id, e)
            config.broken_agents[agent_id] = "the stored GNSS receiver does not parse"
    log.info(
        "fleet configuration v%d: %d agents, %d policies (%d unusable)",
        version,
        len(config.targets),
        len(config.policies),
        len(config.unusable),
    )
    return config
