"""``GET /metrics``: the verifier API's Prometheus metrics, for viewers (``docs/metrics.md``).

Two parts. What this process counted (``verifier.metrics``: fresh rounds for tokens, tokens
issued and refused, their record bytes), and the fleet as it stands, read at scrape time:
agents per state and each attested agent's lease margin (through the lease, as every reader
sees them), the due backlog and how late its oldest agent is, the Celery queue's length, and
how many worker processes heartbeat. The workers' own rounds are on each worker's listener
(``worker_metrics_port``), since rounds run there.

Access: a viewer API key (``Authorization: Bearer``), as Prometheus' ``authorization`` block
sends it. The fleet gauges name every agent and its state, which is what viewers may read and
the public may not.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Iterator

import redis
from flask import Blueprint, Flask, Response, current_app
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from geoattest.access.guard import requires
from geoattest.access.keys import Role
from geoattest.openapi import documented
from verifier.core.states import AgentState
from verifier.engine.status import StatusReader
from verifier.metrics_export import CONTENT_TYPE, exposition
from verifier.storage.hot_state import SCHEDULE_KEY, HotState

metrics_blueprint = Blueprint("metrics", __name__)

_FLEET_REGISTRY = "geoattest.metrics.fleet"
CELERY_QUEUE = "celery"  # Celery's default queue: a Redis list of waiting task messages


class FleetGauges(Collector):
    """Gauges read from the store and Redis each time Prometheus scrapes."""

    def __init__(self, status: StatusReader, client: redis.Redis) -> None:
        self._status = status
        self._redis = client
        self._hot = HotState(client)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = dt.datetime.now(dt.UTC)
        statuses = self._status.all(now)
        counts = Counter(status.lease.state for status in statuses)
        states = GaugeMetricFamily(
            "geoattest_agents", "Agents per state, through the lease.", labels=["state"]
        )
        for state in AgentState:
            states.add_metric([state.value], counts.get(state, 0))
        yield states
        margin = GaugeMetricFamily(
            "geoattest_lease_margin_seconds",
            "Seconds of lease an attested agent has left (a round must pass before it is 0).",
            labels=["agent"],
        )
        for status in statuses:
            if status.lease.attested:
                margin.add_metric([status.view.agent_id], status.lease.remaining(now))
        yield margin
        yield from self._queue(time.time())

    def _queue(self, now: float) -> Iterator[GaugeMetricFamily]:
        try:
            oldest = self._redis.zrangebyscore(SCHEDULE_KEY, "-inf", now, 0, 1, withscores=True)
            due = self._hot.due_count(now)
            queued = int(self._redis.llen(CELERY_QUEUE))
            workers = len(self._hot.workers_seen())
        except redis.RedisError:  # the scrape still answers; these series go missing
            return
        yield GaugeMetricFamily(
            "geoattest_due_backlog", "Agents whose round is due and not yet claimed.", value=due
        )
        lag = now - float(oldest[0][1]) if oldest else 0.0
        yield GaugeMetricFamily(
            "geoattest_queue_lag_seconds",
            "How long the most overdue agent has waited past its due time.",
            value=max(lag, 0.0),
        )
        yield GaugeMetricFamily(
            "geoattest_celery_queue_length",
            "Task messages waiting in Celery's queue.",
            value=queued,
        )
        yield GaugeMetricFamily(
            "geoattest_workers", "Worker processes that heartbeat recently.", value=workers
        )


def install_metrics(app: Flask, status: StatusReader, client: redis.Redis) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetGauges(status, client))
    app.extensions[_FLEET_REGISTRY] = registry
    app.register_blueprint(metrics_blueprint)


@metrics_blueprint.get("/metrics")
@requires(Role.VIEWER)
@documented("Prometheus metrics: rounds, leases, tokens, queue (text format)")
def metrics() -> Response:
    fleet: CollectorRegistry = current_app.extensions[_FLEET_REGISTRY]
    return Response(exposition() + generate_latest(fleet), content_type=CONTENT_TYPE)
