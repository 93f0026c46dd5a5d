"""A worker that survives kombu's restore of unacked messages when Redis goes away."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def survive_restore_without_connection() -> None:
    """Keep the worker alive through kombu's restore of unacked messages at a lost connection.

    When Redis goes away, Celery closes the channel, and kombu's Redis ``QoS.restore_unacked``
    asks the channel for a client through a connection that is already gone: AttributeError
    (``'NoneType' object has no attribute 'hostname'``, kombu 5.x), which Celery takes as
    unrecoverable, and the worker exits (the fault suite saw it after a Redis restart). Nothing
    needs restoring here: a batch lost with its message is claimed again after the claim
    horizon. So that failure is logged and skipped; any other error still propagates."""
    from kombu.transport import redis as kombu_redis

    original = kombu_redis.QoS.restore_unacked
    if getattr(original, "geoattest_guarded", False):
        return

    def restore_unacked(self: kombu_redis.QoS, client: object = None) -> None:
        try:
            original(self, client)
        except AttributeError as e:
            log.warning("unacked broker messages not restored (connection gone: %s)", e)

    restore_unacked.geoattest_guarded = True  # type: ignore[attr-defined]  # idempotence mark
    restore_unacked.kombu_original = original  # type: ignore[attr-defined]  # for its test
    kombu_redis.QoS.restore_unacked = restore_unacked  # type: ignore[method-assign]
