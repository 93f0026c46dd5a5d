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

from geoattest.errors import GeoattestError, NotFound, PolicyInvalid
from geofence import GnssReceiver, ZoneSet
from tpm import TpmPublic, parse_tpm2b_public
from verifier.core.identity import enrolled_receiver
from verifier.core.lease import default_max_age
from verifier.core.policy import AttestationPolicy, document_digest, policy_from_document
from verifier.storage.policies import PolicyHead
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
    # policy name -> the stored document that ``policies``/``unusable`` hold for it
    heads: dict[str, PolicyHead] = field(default_factory=dict)
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


def load_fleet(
    store: VerifierStore, zones: ZoneSet | None, version: int, previous: FleetConfig | None = None
) -> FleetConfig:
    """The fleet at configuration ``version``. Policies whose stored version, digest and size
    are those of ``previous`` are kept as they were parsed (or refused) there: adding an agent
    must not make every worker process parse a whole-system policy of tens of MB again."""
    config = FleetConfig(version=version, targets=store.targets())
    for name, head in store.policy_heads().items():
        if previous is not None and head.digest is not None and previous.heads.get(name) == head:
            config.heads[name] = head
            if name in previous.policies:
                config.policies[name] = previous.policies[name]
            else:
                config.unusable[name] = previous.unusable[name]
            continue
        _load_policy(config, store, name, zones)
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
    # A process's first load is start-up (each pool process makes one whenever it first runs a
    # batch, at rest too): debug; a load because an operator changed something: info.
    log.log(
        logging.DEBUG if previous is None or previous.version < 0 else logging.INFO,
        "fleet configuration v%d: %d agents, %d policies (%d unusable)",
        version,
        len(config.targets),
        len(config.policies),
        len(config.unusable),
    )
    return config


def _load_policy(
    config: FleetConfig, store: VerifierStore, name: str, zones: ZoneSet | None
) -> None:
    try:
        stored = store.get_policy(name)
        config.heads[name] = PolicyHead(
            version=stored.version, digest=stored.digest, size_bytes=len(stored.canonical)
        )
        if document_digest(stored.canonical) != stored.digest:
            # Records name the digest they were judged under: never judge under other bytes.
            raise PolicyInvalid(
                "the stored document does not match its digest (edited outside the API?)"
            )
        config.policies[name] = policy_from_document(
            name, stored.version, stored.document, zones, digest=stored.digest
        )
    except NotFound:  # deleted between the two reads: the next configuration version says so
        return
    except GeoattestError as e:  # validated when written; still never trusted on reload
        log.error("policy %s unusable: %s", name, e.message)
        config.unusable[name] = e.message
    except Exception as e:  # a bug, or a stored document that no longer parses
        log.exception("policy %s unusable", name)
        config.unusable[name] = f"the policy could not be loaded ({type(e).__name__})"
