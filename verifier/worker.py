"""Celery on Redis: beat dispatches due rounds in batches; workers run them; webhooks retry.

Scale design: beat does not schedule one task per agent. Every ``DISPATCH_PERIOD`` seconds the
``dispatch`` task atomically claims the agents that are due (a Redis sorted set by due time) and
enqueues them in batches of ``BATCH_SIZE``; a worker runs a batch's rounds concurrently on a
thread pool, each under its agent's lock with an HTTP timeout, so one slow agent never blocks a
worker. Tasks are idempotent and ``acks_late``: a batch redelivered after a worker crash only
runs rounds again (each with a fresh nonce), and a claimed agent whose round never ran becomes due
again after ``CLAIM_HORIZON`` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import wait

from celery import Celery

from geoattest.settings import Settings
from tpm import TpmPublic
from verifier.core.policy import AttestationPolicy
from verifier.core.states import POLLED_STATES
from verifier.engine.runtime import VerifierRuntime, runtime_for
from verifier.notify.webhooks import MAX_DELIVERY_ATTEMPTS, WebhookDeliveryFailed
from verifier.storage.sql import AgentTarget

log = logging.getLogger(__name__)

DISPATCH_PERIOD = 0.25
BATCH_SIZE = 25
CLAIM_HORIZON = 30.0
MAX_CLAIMS_PER_DISPATCH = 5000

RECONCILE_PERIOD = 5.0
DISPATCH_TASK = "geoattest.verifier.dispatch"
RECONCILE_TASK = "geoattest.verifier.reconcile"
BATCH_TASK = "geoattest.verifier.attest_batch"
WEBHOOK_TASK = "geoattest.verifier.deliver_webhook"


def create_celery(settings: Settings) -> Celery:
    """The verifier's Celery app, configured from ``settings`` (broker: ``settings.redis_url``)."""
    app = Celery("geoattest-verifier", broker=settings.redis_url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        timezone="UTC",
        beat_schedule={
            "dispatch-due-rounds": {
                "task": DISPATCH_TASK,
                "schedule": DISPATCH_PERIOD,
                "options": {"expires": DISPATCH_PERIOD * 4},
            },
            "reconcile-schedule": {
                "task": RECONCILE_TASK,
                "schedule": RECONCILE_PERIOD,
                "options": {"expires": RECONCILE_PERIOD},
            },
        },
    )

    def enqueue_delivery(delivery_id: int) -> None:
        deliver_webhook.delay(delivery_id)

    def runtime() -> VerifierRuntime:
        return runtime_for(settings, enqueue_delivery)

    @app.task(name=DISPATCH_TASK, ignore_result=True)
    def dispatch() -> int:
        """Claim due agents and enqueue their rounds in batches; returns how many."""
        hot = runtime().hot
        now = time.time()
        claimed = hot.claim_due(now, now + CLAIM_HORIZON, MAX_CLAIMS_PER_DISPATCH)
        for start in range(0, len(claimed), BATCH_SIZE):
            attest_batch.apply_async((claimed[start : start + BATCH_SIZE],), expires=CLAIM_HORIZON)
        return len(claimed)

    @app.task(name=RECONCILE_TASK, ignore_result=True)
    def reconcile() -> int:
        """Schedule polled agents the Redis schedule lacks (Redis restarted, entry lost)."""
        rt = runtime()
        polled = [
            agent_id
            for agent_id, target in rt.fleet().targets.items()
            if target.state in POLLED_STATES
        ]
        added = rt.hot.schedule_missing(polled, time.time())
        if added:
            log.warning("re-scheduled %d agent(s) missing from the Redis schedule", added)
        return added

    @app.task(name=BATCH_TASK, ignore_result=True, acks_late=True)
    def attest_batch(agent_ids: Sequence[str]) -> int:
        """Run the rounds of ``agent_ids`` concurrently; returns how many rounds ran."""
        return run_batch(runtime(), agent_ids)

    @app.task(
        name=WEBHOOK_TASK,
        ignore_result=True,
        autoretry_for=(WebhookDeliveryFailed,),
        retry_backoff=2,
        retry_backoff_max=300,
        retry_jitter=True,
        max_retries=MAX_DELIVERY_ATTEMPTS,
    )
    def deliver_webhook(delivery_id: int) -> None:
        runtime().webhooks.deliver(delivery_id)

    return app


def run_batch(runtime: VerifierRuntime, agent_ids: Sequence[str]) -> int:
    """The body of ``attest_batch``, usable without Celery (benchmarks, tests of the runner)."""
    fleet = runtime.fleet()
    futures = []
    for agent_id in agent_ids:
        target = fleet.targets.get(agent_id)
        if target is None:  # removed since it was claimed
            runtime.hot.unschedule(agent_id)
            continue
        policy = fleet.policies.get(target.policy_name)
        if policy is None:
            log.error("agent %s: policy %s unusable; round skipped", agent_id, target.policy_name)
            continue
        futures.append(
            runtime.pool.submit(
                _guarded_round,
                runtime,
                target,
                fleet.aks[agent_id],
                policy,
                fleet.location_keys.get(agent_id),
            )
        )
    # Rounds end by themselves (HTTP total deadline); this bound only keeps a batch task from
    # hanging on a bug. Rounds still running go on in the pool and finish under their lock.
    done, pending = wait(futures, timeout=runtime.settings.agent_timeout_seconds * 2 + 10)
    if pending:
        log.error("%d round(s) of a batch still running after the batch deadline", len(pending))
    return sum(1 for future in done if future.result())


def _guarded_round(
    runtime: VerifierRuntime,
    target: AgentTarget,
    ak: TpmPublic,
    policy: AttestationPolicy,
    location_key: TpmPublic | None,
) -> bool:
    try:
        result = runtime.runner.run(target, ak, policy, location_key)
    except Exception:  # the outermost boundary of a round: log it, keep the worker alive
        log.exception("round for agent %s crashed", target.agent_id)
        return False
    return result is not None
