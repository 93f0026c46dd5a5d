"""Per-process resources of a verifier worker: database, Redis, agent client, writer, caches.

Celery's prefork pool forks worker processes, and sockets and threads must not cross a fork, so
each process builds its own runtime on first use (keyed by pid).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from geoattest.db import check_private_database, make_engine, session_factory
from geoattest.settings import Settings
from verifier.core.round_record import RecordOrigin
from verifier.engine.cadence import Cadence
from verifier.engine.fetch import AgentClient, ClientIdentity, EvidenceSource
from verifier.engine.fleet import FleetConfig, LeaseDefaults, load_fleet
from verifier.engine.runner import RoundRunner
from verifier.notify.revocations import EventPublisher
from verifier.notify.webhooks import WebhookSender
from verifier.signing.keyring import KeyPurpose, Keyring
from verifier.storage.documents import DocumentKind, DocumentStore
from verifier.storage.group_commit import GroupCommitter
from verifier.storage.hot_state import HotState, connect_redis
from verifier.storage.log import TransparencyLog
from verifier.storage.records import RecordStore
from verifier.storage.redis_target import redis_target
from verifier.storage.runtime_digests import RuntimeDigests
from verifier.storage.sql import VerifierStore
from verifier.storage.verdicts import VerdictStore
from verifier.tls_files import verifier_client_files
from verifier.zones_file import load_zones_with_digest

ROUND_THREADS = 16


TAKEOVER_MARGIN_SECONDS = 1.0  # judging and confirming after the fetch deadline


def takeover_of(settings: Settings) -> float:
    """How long a dead worker's round lock or dispatch claim keeps its agent from the others:
    ``takeover_seconds``, or the fetch deadline plus a second (a live round confirms its lock
    within that, ``RoundRunner._draft``). It must fit in the lease after one interval, or a
    killed box's agents go ``stale`` before a survivor judges them (ADR 20)."""
    if settings.takeover_seconds is not None:
        return settings.takeover_seconds
    return settings.agent_timeout_seconds + TAKEOVER_MARGIN_SECONDS


def takeover_fits_lease(settings: Settings, dispatch_period: float) -> bool:
    """Whether an agent orphaned by a dead worker is judged again before its lease ends: its
    claim (one interval after its last pass) lapses after the takeover, the next dispatch picks
    it up, and its round still needs about a second."""
    lease = lease_defaults_of(settings).max_age.total_seconds()
    needed = settings.round_interval_seconds + takeover_of(settings) + dispatch_period
    return needed + TAKEOVER_MARGIN_SECONDS <= lease


def cadence_of(settings: Settings) -> Cadence:
    return Cadence(
        interval=settings.round_interval_seconds,
        lock_ttl=takeover_of(settings),
        backoff_max=settings.unreachable_backoff_max_seconds,
        sample_every=dt.timedelta(seconds=settings.record_sample_seconds),
    )


def lease_defaults_of(settings: Settings) -> LeaseDefaults:
    return LeaseDefaults.of(
        interval=settings.round_interval_seconds,
        round_deadline=settings.agent_timeout_seconds,
        override=settings.lease_max_age_seconds,
    )


def log_keyring(settings: Settings) -> Keyring:
    """The keyring of the log's checkpoint keys; retired keys stay published for ever."""
    return Keyring(settings.verifier_keys_dir, KeyPurpose.LOG, retired_lifetime=None)


def verifier_id_of(settings: Settings) -> str:
    return settings.verifier_id or socket.gethostname()[:64]


class VerifierRuntime:
    def __init__(
        self,
        settings: Settings,
        enqueue_delivery: Callable[[int], None],
        *,
        source: EvidenceSource | None = None,
    ) -> None:
        self.settings = settings
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self.engine = make_engine(settings.database_url, background_checkpoints=True)
        check_private_database(settings.database_url)
        self.sessions = session_factory(self.engine)
        self.store = VerifierStore(self.sessions)
        self.records = RecordStore(self.sessions)
        self.log = TransparencyLog(self.engine, origin=settings.log_origin)
        self.log_keys = log_keyring(settings)
        self.verdicts = VerdictStore(self.engine, settings.webhook_urls)
        self.committer = GroupCommitter(self.verdicts)
        self.hot_client = connect_redis(redis_target(settings))
        self.hot = HotState(self.hot_client)
        if source is None:
            cert, key = verifier_client_files(settings.verifier_tls_dir)
            source = AgentClient(
                ClientIdentity(cert_file=cert, key_file=key),
                timeout=settings.agent_timeout_seconds,
                connections_per_endpoint=ROUND_THREADS,
            )
        self.source = source
        loaded = load_zones_with_digest(settings)
        self.zones = loaded.zones if loaded is not None else None
        if loaded is not None:  # records name it by digest: exports find it by digest
            DocumentStore(self.sessions).remember(
                DocumentKind.ZONES, loaded.data, dt.datetime.now(dt.UTC)
            )
        self.origin = RecordOrigin(
            verifier_id=verifier_id_of(settings),
            zones_sha256=loaded.sha256 if loaded is not None else None,
        )
        self.publish = EventPublisher(hot=self.hot, enqueue_delivery=enqueue_delivery)
        self.cadence = cadence_of(settings)
        self.lease = lease_defaults_of(settings)
        self.runner = RoundRunner(
            hot=self.hot,
            source=source,
            committer=self.committer,
            publish=self.publish,
            cadence=self.cadence,
            origin=self.origin,
            measured=RuntimeDigests(self.hot_client),
        )
        secret = settings.webhook_secret
        self.webhooks = WebhookSender(
            self.sessions, secret.get_secret_value().encode() if secret else None
        )
        self.pool = ThreadPoolExecutor(ROUND_THREADS, thread_name_prefix="round")
        self._config = FleetConfig()
        self._config_lock = threading.Lock()

    def fleet(self) -> FleetConfig:
        """The cached agents and policies, reloaded if an operator changed anything."""
        version = self.hot.config_version()
        with self._config_lock:
            if version != self._config.version:
                self._config = load_fleet(self.store, self.zones, version, self._config)
            return self._config

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.committer.close()
        self.engine.dispose()


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
