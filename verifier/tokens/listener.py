"""Listening to ``geoattest:revocations``: when an agent's trust ends, the token service drops
its session and cached view, and the status document is signed anew at its next read.

The listener only makes things happen sooner. Issuance re-checks the agent row in the
transaction that stores a token, and the verdict that ended trust revoked the agent's tokens in
its own transaction; a missed message costs at most one ``refresh`` of the status document and
one snapshot age (a quarter second) of cached view.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

import redis

from verifier.storage.hot_state import REVOCATION_CHANNEL

__all__ = ["RevocationListener"]

log = logging.getLogger(__name__)


class RevocationListener:
    def __init__(
        self,
        client: redis.Redis,
        *,
        on_agent: Callable[[str], None],
        on_any: Callable[[], None],
        retry_seconds: float = 1.0,
    ) -> None:
        self._client = client
        self._on_agent = on_agent
        self._on_any = on_any
        self._retry = retry_seconds
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="token-revocations", daemon=True)

    def start(self, *, wait: float = 5.0) -> None:
        """Start listening; returns once subscribed (or after ``wait`` seconds)."""
        self._thread.start()
        self._ready.wait(wait)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except redis.RedisError as e:
                log.warning("revocation channel lost (%s); re-subscribing", e)
                self._on_any()  # what was missed meanwhile: re-sign the status document
                self._stop.wait(self._retry)

    def _listen(self) -> None:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call, unused-ignore]  # redis-py < 8 leaves it unannotated
        try:
            pubsub.subscribe(REVOCATION_CHANNEL)
            self._ready.set()
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=0.5)
                if message is not None:
                    self._handle(message.get("data"))
        finally:
            pubsub.close()

    def _handle(self, data: object) -> None:
        try:
            if not isinstance(data, bytes | str):
                raise TypeError("not a message body")
            agent_id = json.loads(data)["agent_id"]
        except (ValueError, KeyError, TypeError):
            log.warning("revocation message without an agent id ignored")
            return
        self._on_any()
        if isinstance(agent_id, str):
            self._on_agent(agent_id)
