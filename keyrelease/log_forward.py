"""Sending the key service's releases and refusals to the verifier's transparency log.

The key service's own ledger is the queue: every entry is stored first (``ReleaseLedger``) with
``logged_at`` NULL, and a forwarder thread posts the pending ones, oldest first, to the
verifier's ``POST /v1/log/audit`` (an ``admin`` API key, ``keys_log_api_key``), marking each
once the verifier answered ``202``. So a verifier outage, a network failure or a restart of the
key service delays an entry, never loses it: the forwarder retries with exponential backoff
(``min_backoff`` doubling up to ``max_backoff``) and picks up where it stopped after a restart.

Delivery is at least once: an entry whose ``202`` arrived but whose mark did not commit is sent
again; both log entries carry the same ``release_id`` detail, so an auditor can tell them
apart from two releases. An entry the verifier refuses as malformed (``400``) is logged and
skipped until the next start (it stays pending, visible in the ledger); an authentication
failure (``401``/``403``) or any other answer stops the pass and is retried like an outage.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading

import requests

from keyrelease.ledger import ReleaseEntry, ReleaseLedger

__all__ = ["AuditForwarder", "audit_body"]

log = logging.getLogger(__name__)

BATCH = 100


class ForwardFailed(Exception):
    """This pass could not deliver an entry; retried after the backoff."""


def audit_body(entry: ReleaseEntry, actor: str) -> dict[str, object]:
    """The ``POST /v1/log/audit`` body of one ledger entry (the verifier's ``AuditRequest``)."""
    details: dict[str, str] = {"release_id": str(entry.id), "at": entry.at.isoformat()}
    optional = {
        "reason": entry.reason,
        "token_jti": entry.token_jti,
        "workload_sha256": entry.workload_sha256.hex() if entry.workload_sha256 else None,
        "zone_id": entry.zone_id,
        "record_seq": str(entry.record_seq) if entry.record_seq is not None else None,
    }
    details.update({k: v[:300] for k, v in optional.items() if v is not None})
    return {
        "action": "key_released" if entry.outcome == "released" else "key_refused",
        "actor": actor,
        "subject": entry.key_id,
        "agent_id": entry.agent_id,
        "details": details,
    }


class AuditForwarder:
    def __init__(
        self,
        ledger: ReleaseLedger,
        *,
        verifier_url: str,
        api_key: str,
        actor: str,
        timeout: float = 5.0,
        min_backoff: float = 0.5,
        max_backoff: float = 60.0,
        poll: float = 30.0,
    ) -> None:
        self._ledger = ledger
        self._url = verifier_url.rstrip("/") + "/v1/log/audit"
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._actor = actor
        self._timeout = timeout
        self._min_backoff, self._max_backoff, self._poll = min_backoff, max_backoff, poll
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._skipped: set[int] = set()  # refused as malformed: not again until a restart
        self._http = requests.Session()
        self._thread = threading.Thread(target=self._run, name="release-log", daemon=True)

    def start(self) -> None:
        self._ledger.on_record = self._wake.set
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._timeout + 5)
        self._http.close()

    def forward_pending(self) -> int:
        """Post the pending entries (one batch), oldest first; returns how many were accepted.
        Raises ``ForwardFailed`` at the first entry the verifier did not take (the rest wait)."""
        sent = 0
        for entry in self._ledger.pending(BATCH + len(self._skipped)):
            if entry.id is None or entry.id in self._skipped or not self._post(entry):
                continue
            self._ledger.mark_logged([entry.id], dt.datetime.now(dt.UTC))
            sent += 1
            if sent >= BATCH or self._stop.is_set():
                break
        return sent

    def _post(self, entry: ReleaseEntry) -> bool:
        """True once the log accepted ``entry``; False when it refused it as malformed."""
        try:
            response = self._http.post(
                self._url,
                json=audit_body(entry, self._actor),
                headers=self._headers,
                timeout=self._timeout,
            )
        except requests.RequestException as e:
            raise ForwardFailed(f"the verifier's log is unreachable: {e}") from e
        if response.status_code == 202:
            return True
        if response.status_code == 400:
            assert entry.id is not None  # noqa: S101  # pending entries are stored ones
            self._skipped.add(entry.id)
            log.error(
                "the verifier's log refused release entry %d as malformed (kept, not sent "
                "again until a restart): %s",
                entry.id,
                response.text[:300],
            )
            return False
        raise ForwardFailed(
            f"the verifier's log answered {response.status_code}: {response.text[:200]}"
        )

    def _run(self) -> None:
        backoff = self._min_backoff
        while not self._stop.is_set():
            self._wake.clear()  # before the pass: an entry recorded during it wakes the next
            try:
                sent = self.forward_pending()
            except ForwardFailed as e:
                log.warning("release entries not in the transparency log yet (%s); retrying in "
                            "%.1f s", e, backoff)  # fmt: skip
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            except Exception:  # the ledger's database: logged, retried like an outage
                log.exception("reading the release ledger failed; retrying in %.1f s", backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            backoff = self._min_backoff
            if sent >= BATCH:
                continue  # more are waiting
            self._wake.wait(self._poll)
