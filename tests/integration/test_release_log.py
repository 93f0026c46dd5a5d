"""The key service's releases and refusals reach the verifier's transparency log over real HTTP
(a verifier app served on loopback with a real SQLite file and redis-server), and a verifier
outage or a key service restart delays them without losing one."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from geoattest.db import make_engine, migrate
from geoattest.settings import load_settings
from keyrelease.app import FORWARDER
from keyrelease.app import create_app as create_key_service
from keyrelease.ledger import ReleaseEntry, ReleaseLedger
from keyrelease.log_forward import AuditForwarder
from tests.support.access import issue_api_key
from tests.support.identity_trust import unused_identity_trust
from tests.support.served_app import ServedApp
from verifier.app import close_app, create_app
from verifier.core.log_entry import AuditAction, AuditEntry, decode_entry
from verifier.storage.log import TransparencyLog

pytestmark = [pytest.mark.redis]


@dataclass
class Verifier:
    served: ServedApp
    log: TransparencyLog
    admin_key: str

    def audits(self) -> list[AuditEntry]:
        """Every audit entry in the log (queued entries sequenced first)."""
        now = dt.datetime.now(dt.UTC)
        while self.log.sequence(now):
            pass
        size, found = 0, []
        while batch := self.log.entries(size, size + 100):
            size += len(batch)
            found += [
                e for e in (decode_entry(s.entry) for s in batch) if isinstance(e, AuditEntry)
            ]
        return found


@pytest.fixture
def verifier(tmp_path: Path, redis_url: str) -> Iterator[Verifier]:
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'verifier.sqlite'}",
        redis_url=redis_url,
        **unused_identity_trust(tmp_path),
        verifier_tls_dir=tmp_path / "tls",
        verifier_keys_dir=tmp_path / "keys",
    )
    app = create_app(settings)
    served = ServedApp(app, "verifier")
    served.start()
    try:
        yield Verifier(
            served=served,
            log=app.extensions["geoattest.log"],
            admin_key=issue_api_key(settings.database_url),
        )
    finally:
        served.stop()
        close_app(app)


@pytest.fixture
def ledger(tmp_path: Path) -> ReleaseLedger:
    engine = make_engine(f"sqlite:///{tmp_path / 'releases.sqlite'}")
    migrate(engine)
    return ReleaseLedger(engine)


def _forwarder(ledger: ReleaseLedger, verifier: Verifier, key: str | None = None) -> AuditForwarder:
    return AuditForwarder(
        ledger,
        verifier_url=verifier.served.url,
        api_key=key or verifier.admin_key,
        actor="geoattest-keys:test",
        timeout=2.0,
        min_backoff=0.05,
        max_backoff=0.2,
        poll=0.2,
    )


def _within(seconds: float, holds: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + seconds
    while not holds():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _release(key_id: str, jti: str) -> ReleaseEntry:
    return ReleaseEntry(
        at=dt.datetime.now(dt.UTC),
        key_id=key_id,
        outcome="released",
        agent_id="edge-1",
        token_jti=jti,
        workload_sha256=bytes(32),
        zone_id="DEU",
        record_seq=7,
    )


def test_a_release_reaches_the_log_with_what_the_ledger_recorded(
    verifier: Verifier, ledger: ReleaseLedger
) -> None:
    forwarder = _forwarder(ledger, verifier)
    forwarder.start()
    try:
        ledger.record(_release("model-k1", "t-1"))
        assert _within(10, lambda: not ledger.pending())
    finally:
        forwarder.close()
    (entry,) = verifier.audits()
    assert entry.action is AuditAction.KEY_RELEASED
    assert (entry.subject, entry.agent_id, entry.actor) == (
        "model-k1",
        "edge-1",
        "geoattest-keys:test",
    )
    stored = ledger.entries()[0]
    assert entry.details["release_id"] == str(stored.id)
    assert entry.details["token_jti"] == "t-1"  # noqa: S105  # a token id, not a secret
    assert entry.details["zone_id"] == "DEU"
    assert entry.details["record_seq"] == "7"


def test_entries_recorded_while_the_verifier_is_down_arrive_once_it_is_back(
    verifier: Verifier, ledger: ReleaseLedger
) -> None:
    verifier.served.stop()
    forwarder = _forwarder(ledger, verifier)
    forwarder.start()
    try:
        ledger.record(ReleaseEntry(at=dt.datetime.now(dt.UTC), key_id="model-k1",
                                   outcome="refused", reason="no_token"))  # fmt: skip
        ledger.record(_release("model-k1", "t-2"))
        time.sleep(1.0)  # several failed attempts (backoff 0.05 .. 0.2 s)
        assert len(ledger.pending()) == 2  # nothing dropped, nothing marked
        verifier.served.start()  # the same port
        assert _within(10, lambda: not ledger.pending())
    finally:
        forwarder.close()
    entries = verifier.audits()
    assert [(e.action, e.details.get("token_jti")) for e in entries] == [
        (AuditAction.KEY_REFUSED, None),
        (AuditAction.KEY_RELEASED, "t-2"),
    ]
    assert entries[0].details["reason"] == "no_token"


def test_a_wrong_api_key_keeps_entries_pending_and_a_restart_sends_them(
    verifier: Verifier, ledger: ReleaseLedger
) -> None:
    refused = _forwarder(ledger, verifier, key="gak_" + "x" * 43)
    refused.start()
    try:
        ledger.record(_release("model-k2", "t-3"))
        time.sleep(0.6)
        assert len(ledger.pending()) == 1  # 401: retried, not dropped
    finally:
        refused.close()
    assert verifier.audits() == []
    restarted = _forwarder(ledger, verifier)  # the key service restarted with the right key
    restarted.start()
    try:
        assert _within(10, lambda: not ledger.pending())
    finally:
        restarted.close()
    assert [e.details["token_jti"] for e in verifier.audits()] == ["t-3"]


def test_the_key_service_sends_its_refusals_to_the_log(tmp_path: Path, verifier: Verifier) -> None:
    """Wired in ``create_app``: a request without a token is refused, recorded and logged."""
    settings = load_settings(
        verifier_url=verifier.served.url,
        keys_dir=tmp_path / "model-keys",
        keys_database_url=f"sqlite:///{tmp_path / 'keys.sqlite'}",
        keys_log_api_key=verifier.admin_key,
    )
    app = create_key_service(settings)
    try:
        response = app.test_client().post("/v1/keys/model-k3/release")
        assert response.status_code == 400
        assert _within(10, lambda: len(verifier.audits()) == 1)
    finally:
        app.extensions[FORWARDER].close()
    (entry,) = verifier.audits()
    assert (entry.action, entry.subject) == (AuditAction.KEY_REFUSED, "model-k3")
    assert entry.details["reason"] == "no_token"
