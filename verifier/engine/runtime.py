"""Per-process resources of a verifier worker: database, Redis, agent client, caches.

Celery's prefork pool forks worker processes, and sockets must not cross a fork, so each process
builds its own runtime on first use (keyed by pid). Agents, AKs and policies are cached and
reloaded when the configuration version in Redis moves (an operator changed something), so a
changed policy takes effect at the next round without a database read per round.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import redis

from geoattest.db import make_engine, session_factory
from geoattest.errors import GeoattestError
from geoattest.settings import Settings
from tpm import TpmPublic, parse_tpm2b_public
from verifier.core.policy import AttestationPolicy, policy_from_document
from verifier.engine.fetch import AgentClient, ClientIdentity
from verifier.engine.runner import Cadence, RoundRunner
from verifier.notify.revocations import FailureNotifier
from verifier.notify.webhooks import WebhookSender
from verifier.storage.hot_state import HotState
from verifier.storage.sql import AgentTarget, VerifierStore
from verifier.tls_files import verifier_client_files
from verifier.zones_file import load_zones_file

log = logging.getLogger(__name__)

ROUND_THREADS = 16


@dataclass(slots=True)
class FleetConfig:
    version: int = -1
    targets: dict[str, AgentTarget] = field(default_factory=dict)
    aks: dict[str, TpmPublic] = field(default_factory=dict)
    policies: dict[str, AttestationPolicy] = field(default_factory=dict)
    location_keys: dict[str, TpmPublic] = field(default_factory=dict)


class VerifierRuntime:
    def __init__(self, settings: Settings, enqueue_delivery: Callable[[int], None]) -> None:
        self.settings = settings
        engine = make_engine(settings.database_url)
        self.sessions = session_factory(engine)
        self.store = VerifierStore(self.sessions)
        self.hot = HotState(redis.Redis.from_url(settings.redis_url))
        cert, key = verifier_client_files(settings.verifier_tls_dir)
        self.client = AgentClient(
            ClientIdentity(cert_file=cert, key_file=key),
            timeout=settings.agent_timeout_seconds,
            connections_per_endpoint=ROUND_THREADS,
        )
        self.runner = RoundRunner(
            store=self.store,
            hot=self.hot,
            client=self.client,
            cadence=Cadence(
                interval=settings.round_interval_seconds,
                lock_ttl=settings.agent_timeout_seconds * 2 + 5,
                backoff_max=settings.unreachable_backoff_max_seconds,
            ),
            on_failure=FailureNotifier(
                hot=self.hot,
                sessions=self.sessions,
                webhook_urls=settings.webhook_urls,
                enqueue_delivery=enqueue_delivery,
            ),
        )
        secret = settings.webhook_secret
        self.webhooks = WebhookSender(
            self.sessions, secret.get_secret_value().encode() if secret else None
        )
        self.zones = load_zones_file(settings)
        self.pool = ThreadPoolExecutor(ROUND_THREADS, thread_name_prefix="round")
        self._config = FleetConfig()
        self._config_lock = threading.Lock()

    def fleet(self) -> FleetConfig:
        """The cached agents and policies, reloaded if an operator changed anything."""
        version = self.hot.config_version()
        with self._config_lock:
            if version != self._config.version:
                self._config = self._load(version)
            return self._config

    def _load(self, version: int) -> FleetConfig:
        config = FleetConfig(version=version, targets=self.store.targets())
        for stored in self.store.list_policies():
            try:
                config.policies[stored.name] = policy_from_document(
                    stored.name, stored.version, stored.document, self.zones
                )
            except GeoattestError as e:  # stored policies were validated; log, never crash
                log.error("policy %s unusable: %s", stored.name, e.message)
        for agent_id, target in config.targets.items():
            config.aks[agent_id] = parse_tpm2b_public(target.ak_public)
            if target.location_key_public is not None:
                config.location_keys[agent_id] = parse_tpm2b_public(target.location_key_public)
        log.info(
            "fleet configuration v%d: %d agents, %d policies",
            version,
            len(config.targets),
            len(config.policies),
        )
        return config


_RUNTIMES: dict[int, VerifierRuntime] = {}
_RUNTIMES_LOCK = threading.Lock()


def runtime_for(settings: Settings, enqueue_delivery: Callable[[int], None]) -> VerifierRuntime:
    """This process's runtime (created on first use after a fork)."""
    pid = os.getpid()
    with _RUNTIMES_LOCK:
        runtime = _RUNTIMES.get(pid)
        if runtime is None:
            runtime = _RUNTIMES[pid] = VerifierRuntime(settings, enqueue_delivery)
        return runtime
