"""Putting the token service together for the verifier's app (one per API process)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

import redis
from flask import Flask
from sqlalchemy import Engine

from geoattest.settings import Settings
from geofence import ZoneSet
from verifier.engine.fetch import EvidenceSource
from verifier.engine.runtime import VerifierRuntime, lease_defaults_of
from verifier.signing.keyring import KeyPurpose, Keyring
from verifier.storage.hot_state import HotState
from verifier.storage.records import RecordStore
from verifier.storage.runtime_digests import RuntimeDigests
from verifier.storage.sql import VerifierStore
from verifier.storage.tokens import TokenLedger
from verifier.tokens.fresh import FreshRounds
from verifier.tokens.listener import RevocationListener
from verifier.tokens.service import TokenConfig, TokenService
from verifier.tokens.sessions import TokenSessions
from verifier.tokens.snapshot import Snapshots
from verifier.tokens.status import StatusPublisher
from verifier.web.tokens_api import KEYRING, LEDGER, SERVICE, STATUS, blueprint

__all__ = ["install_tokens", "token_issuer", "token_keyring"]

CLOCK_SKEW = dt.timedelta(seconds=60)


def token_keyring(settings: Settings) -> Keyring:
    """The token keyring; a retired key stays published until the longest token it can have
    signed has expired (plus a minute of clock skew)."""
    lifetime = dt.timedelta(seconds=settings.token_ttl_seconds) + CLOCK_SKEW
    return Keyring(settings.verifier_keys_dir, KeyPurpose.TOKENS, retired_lifetime=lifetime)


def token_issuer(settings: Settings) -> str:
    if settings.token_issuer:
        return settings.token_issuer
    host = settings.verifier_host
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.verifier_port}"


def install_tokens(
    app: Flask,
    settings: Settings,
    *,
    engine: Engine,
    store: VerifierStore,
    records: RecordStore,
    client: redis.Redis,
    zones: ZoneSet | None,
    evidence_source: EvidenceSource | None = None,
) -> TokenService:
    """Create the keyring if it does not exist yet, and register the token API on ``app``."""
    keyring = token_keyring(settings)
    keyring.ensure(dt.datetime.now(dt.UTC))
    ledger = TokenLedger(engine)
    hot = HotState(client)
    snapshots = Snapshots(
        store=store, records=records, hot=hot, lease=lease_defaults_of(settings), zones=zones
    )
    service = TokenService(
        config=TokenConfig(
            issuer=token_issuer(settings),
            trust_domain=settings.token_trust_domain,
            ttl=dt.timedelta(seconds=settings.token_ttl_seconds),
            workload_names={k.lower(): v for k, v in settings.token_workload_names.items()},
        ),
        sessions=TokenSessions(client, lifetime=settings.token_session_seconds),
        snapshots=snapshots,
        ledger=ledger,
        keyring=keyring,
        measured=RuntimeDigests(client),
        client=client,
        fresh=FreshRounds(
            _lazy_runtime(settings, evidence_source), lock_wait=settings.token_fresh_wait_seconds
        ),
    )
    publisher = StatusPublisher(
        issuer=token_issuer(settings),
        revoked=ledger.revoked,
        signer=keyring.active,
        refresh=dt.timedelta(seconds=settings.round_interval_seconds),
        validity=dt.timedelta(seconds=settings.token_status_seconds),
    )
    listener = RevocationListener(
        client, on_agent=service.forget_agent, on_any=publisher.invalidate
    )
    listener.start()
    app.extensions.update({SERVICE: service, KEYRING: keyring, LEDGER: ledger, STATUS: publisher})
    app.extensions["geoattest.token_listener"] = listener
    app.register_blueprint(blueprint)
    return service


def _lazy_runtime(
    settings: Settings, source: EvidenceSource | None
) -> Callable[[], VerifierRuntime]:
    """The round engine for fresh rounds, built on the first one (it opens the agents' mTLS
    client, a database engine and a verdict writer, which an API that never runs a fresh round
    does not need)."""
    lock = threading.Lock()
    built: list[VerifierRuntime] = []

    def runtime() -> VerifierRuntime:
        with lock:
            if not built:
                built.append(VerifierRuntime(settings, _webhook_sender(settings), source=source))
            return built[0]

    return runtime


def _webhook_sender(settings: Settings) -> Callable[[int], None]:
    """Queue a webhook delivery for the workers (a fresh round that fails the agent)."""
    from verifier.task_names import WEBHOOK_TASK
    from verifier.worker import create_celery

    celery = create_celery(settings)

    def send(delivery_id: int) -> None:
        celery.send_task(WEBHOOK_TASK, (delivery_id,))

    return send
