"""The worker survives kombu restoring unacked messages through a connection already gone
(what made the Celery worker exit after a Redis restart)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from kombu.transport import redis as kombu_redis

from verifier.kombu_restore import survive_restore_without_connection


class _GoneChannel:
    """A channel whose connection is gone, as kombu's is after the broker dropped it."""

    @contextmanager
    def conn_or_acquire(self, client: object = None) -> Iterator[object]:
        connection = None
        yield connection.client  # type: ignore[attr-defined]  # what kombu's _connparams does


class _Qos:
    def __init__(self) -> None:
        self.channel = _GoneChannel()
        self._delivered = {"tag": object()}


def test_without_the_guard_kombu_raises_what_kills_the_worker() -> None:
    survive_restore_without_connection()
    original = kombu_redis.QoS.restore_unacked.kombu_original  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match=r"client"):
        original(_Qos())


def test_with_the_guard_a_restore_without_connection_is_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    survive_restore_without_connection()
    survive_restore_without_connection()  # idempotent
    kombu_redis.QoS.restore_unacked(_Qos())  # type: ignore[arg-type]
    assert "not restored" in caplog.text
