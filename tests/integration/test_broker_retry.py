"""The worker's broker connection comes back within a second of Redis (``verifier.broker_retry``),
not after kombu's growing backoff (2 s, 4 s, 6 s…), on a real redis-server stopped and started."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from geoattest.settings import Settings
from tests.support.redis_server import running_redis_server
from verifier.broker_retry import RETRY_MAX
from verifier.worker import create_celery

pytestmark = pytest.mark.redis

DOWN_FOR = 3.0


def test_the_broker_connection_is_retried_promptly_while_redis_is_down(tmp_path: Path) -> None:
    with running_redis_server(tmp_path) as server:
        app = create_celery(Settings(redis_url=server.url))
        server.stop()
        back_at: list[float] = []

        def come_back() -> None:
            time.sleep(DOWN_FOR)
            server.start()  # returns once Redis answers a PING
            back_at.append(time.monotonic())

        returner = threading.Thread(target=come_back)
        returner.start()
        waits: list[float] = []
        connection = app.connection_for_write()
        try:
            connection.ensure_connection(lambda _exc, interval: waits.append(interval), 30)
            connected_at = time.monotonic()
        finally:
            returner.join()
            connection.release()
    assert waits, "the connection never failed: Redis was not down"
    assert max(waits) <= RETRY_MAX, waits
    assert connected_at - back_at[0] <= RETRY_MAX + 0.5, (connected_at - back_at[0], waits)
