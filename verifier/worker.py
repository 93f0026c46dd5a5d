"""Celery on Redis: beat dispatches due rounds in batches; workers run them; webhooks retry.

Beat also runs the watchdog every ``WATCHDOG_PERIOD`` (leases that ran out become ``stale``), the
compaction every ``COMPACT_PERIOD`` (records past the hot window fold; old ones expire) and the
transparency log's checkpoint every ``log_checkpoint_seconds`` (queued entries sequenced into
the tree, the new tree head signed).

Scale design: beat does not schedule one task per agent. Every ``DISPATCH_PERIOD`` seconds the
``dispatch`` task atomically claims the agents that are due (a Redis sorted set by due time) and
enqueues them in batches of ``BATCH_SIZE``; a worker runs a batch's rounds concurrently on a
thread pool, each under its agent's lock with an HTTP timeout, so one slow agent never blocks a
worker. Tasks are idempotent and acknowledged on receipt: a claimed agent whose round never ran
(its batch lost with a killed worker) becomes due again after the claim horizon (the takeover,
``claim_horizon``, well inside the lease); a round that finds the agent locked by a killed
worker makes it due again when that lock expires, and a batch carries its claim time, so an
agent claimed twice (a slow queue) is judged once. Several boxes run their own beat on one
Redis: a claim is atomic, so each due agent goes to one dispatch (ADR 20).

The periodic tasks (dispatch four times a second, watchdog, reconcile, compaction) and the round
batches log at debug, and so do Celery's own per-task lines about them (``quiet_tick_logs``): a
worker at rest writes nothing at info. A round logs one info line when it changes an agent's
state.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from concurrent.futures import wait

import redis
from celery import Celery

from geoattest.errors import Conflict, DependencyUnavailable
from geoattest.settings import Settings
from verifier.broker_retry import PromptAMQP
from verifier.core.reasons import Reason
from verifier.core.states import POLLED_STATES, AgentMode
from verifier.engine.round_target import RoundTarget
from verifier.engine.runtime import (
    VerifierRuntime,
    lease_defaults_of,
    runtime_for,
    takeover_fits_lease,
    takeover_of,
)
from verifier.engine.watchdog import Watchdog
from verifier.kombu_restore import survive_restore_without_connection
from verifier.notify.webhooks import MAX_DELIVERY_ATTEMPTS, WebhookDeliveryFailed
from verifier.signing.keyring import Keyring
from verifier.storage.log import TransparencyLog
from verifier.storage.redis_target import RedisTarget, redis_target
from verifier.task_names import (
    BATCH_TASK,
    CHECKPOINT_TASK,
    COMPACT_TASK,
    DISPATCH_TASK,
    RECONCILE_TASK,
    WATCHDOG_TASK,
    WEBHOOK_TASK,
)
from verifier.worker_logs import quiet_tick_logs

log = logging.getLogger(__name__)

DISPATCH_PERIOD = 0.25
BATCH_SIZE = 25
MAX_CLAIMS_PER_DISPATCH = 5000
CLAIM_EXPIRY = 120.0  # a batch older than this is dropped unrun: its agents were claimed again

RECONCILE_PERIOD = 5.0
WATCHDOG_PERIOD = 1.0
COMPACT_PERIOD = 60.0


def create_celery(settings: Settings) -> Celery:
    """The verifier's Celery app, configured from ``settings`` (broker: ``redis_url``, or
    kombu's ``sentinel://`` transport when ``redis_sentinels`` is set; no result backend:
    every task ignores its result)."""
    quiet_tick_logs()
    survive_restore_without_connection()
    broker, sentinel_options = redis_target(settings).celery_broker()
    app = Celery("geoattest-verifier", broker=broker, amqp=PromptAMQP)
    app.conf.update(
        # Acknowledged on receipt: kombu's Redis transport crashes the whole worker when a late
        # ack meets a channel closed by a Redis restart (the fault suite saw it), and late acks
        # bought nothing here: a batch lost with a worker is claimed again after the claim
        # horizon, and Redis would redeliver it only after its visibility timeout (an hour).
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        # The CLI checks Redis before it starts the worker (a clear error, exit 3); once
        # running, a lost broker connection is retried for ever (max_retries None), every
        # 0.5-1 s (``verifier.broker_retry``; each attempt logged); a batch in flight is not
        # redelivered (acks on receipt, above) but claimed again after its claim horizon.
        broker_connection_retry_on_startup=True,
        broker_connection_retry=True,
        broker_connection_max_retries=None,
        broker_transport_options={
            "socket_timeout": 10,
            "socket_connect_timeout": 5,
            **sentinel_options,
        },
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
            "expire-leases": {
                "task": WATCHDOG_TASK,
                "schedule": WATCHDOG_PERIOD,
                "options": {"expires": WATCHDOG_PERIOD * 2},
            },
            "compact-records": {
                "task": COMPACT_TASK,
                "schedule": COMPACT_PERIOD,
                "options": {"expires": COMPACT_PERIOD},
            },
            "sign-checkpoint": {
                "task": CHECKPOINT_TASK,
                "schedule": settings.log_checkpoint_seconds,
                "options": {"expires": settings.log_checkpoint_seconds},
            },
        },
    )

    def enqueue_delivery(delivery_id: int) -> None:
        deliver_webhook.delay(delivery_id)

    def runtime() -> VerifierRuntime:
        return runtime_for(settings, enqueue_delivery)

    horizon = claim_horizon(settings)
    if not takeover_fits_lease(settings, DISPATCH_PERIOD):
        log.warning(
            "takeover %.1f s does not fit the %.1f s lease after a %.1f s interval: agents of a "
            "killed worker will read stale before another worker judges them (ADR 20)",
            takeover_of(settings),
            lease_defaults_of(settings).max_age.total_seconds(),
            settings.round_interval_seconds,
        )

    @app.task(name=DISPATCH_TASK, ignore_result=True)
    def dispatch() -> int:
        """Claim due agents and enqueue their rounds in batches; returns how many."""
        hot = runtime().hot
        now = time.time()
        claimed = hot.claim_due(now, now + horizon, MAX_CLAIMS_PER_DISPATCH)
        for start in range(0, len(claimed), BATCH_SIZE):
            batch = claimed[start : start + BATCH_SIZE]
            attest_batch.apply_async((batch, now), expires=CLAIM_EXPIRY)
        if claimed:
            log.debug("dispatched %d round(s)", len(claimed))
        return len(claimed)

    @app.task(name=RECONCILE_TASK, ignore_result=True)
    def reconcile() -> int:
        """Schedule polled agents the Redis schedule lacks (Redis restarted, entry lost)."""
        rt = runtime()
        polled = [
            agent_id
            for agent_id, target in rt.fleet().targets.items()
            if target.state in POLLED_STATES and target.mode is AgentMode.PULL
        ]
        added = rt.hot.schedule_missing(polled, time.time())
        if added:
            log.warning("re-scheduled %d agent(s) missing from the Redis schedule", added)
        return added

    @app.task(name=WATCHDOG_TASK, ignore_result=True)
    def watchdog() -> int:
        """Record ``stale`` for agents whose lease ran out; returns how many. Also the worker's
        heartbeat (what ``/v1/readyz`` reads), whether or not it has rounds to run."""
        rt = runtime()
        rt.hot.heartbeat(rt.worker_id)
        return expire_leases(rt)

    @app.task(name=COMPACT_TASK, ignore_result=True)
    def compact() -> int:
        """Fold records past the hot window and delete expired ones; returns how many. Also
        sends webhook deliveries whose enqueue after their commit failed (housekeeping on the
        same minute's cadence: a delivery counts as unsent only after ``UNSENT_AFTER``)."""
        rt = runtime()
        unsent = rt.webhooks.claim_unsent(dt.datetime.now(dt.UTC))
        for delivery_id in unsent:
            deliver_webhook.delay(delivery_id)
        if unsent:
            log.warning("re-enqueued %d webhook delivery(ies) never attempted", len(unsent))
        return compact_records(rt)

    @app.task(name=CHECKPOINT_TASK, ignore_result=True)
    def checkpoint() -> int:
        """Sequence queued log entries and sign the tree head; returns the tree size."""
        return sign_checkpoint(runtime())

    @app.task(name=BATCH_TASK, ignore_result=True)
    def attest_batch(agent_ids: Sequence[str], claimed_at: float | None = None) -> int:
        """Run the rounds of ``agent_ids`` (claimed at ``claimed_at``) concurrently; returns how
        many rounds ran."""
        return run_batch(runtime(), agent_ids, claimed_at=claimed_at)

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


def require_redis(target: RedisTarget | str) -> None:
    """Raise ``DependencyUnavailable`` (the CLI exits 3 with its message) when Redis (the
    primary Sentinel names, with Sentinel) does not answer PING within a few seconds: a worker
    must not start and sit retrying in silence."""
    if isinstance(target, str):
        target = RedisTarget(url=target)
    client = target.client(socket_timeout=3.0, connect_timeout=3.0)
    try:
        client.ping()
    except redis.RedisError as e:
        raise DependencyUnavailable(
            f"Redis at {target.describe()} is unreachable ({e}); start redis-server or set "
            "--redis / GEOATTEST_REDIS_URL (or GEOATTEST_REDIS_SENTINELS)"
        ) from e
    finally:
        client.close()


def claim_horizon(settings: Settings) -> float:
    """How long a dispatched agent stays claimed: the takeover (``takeover_of``, the round
    lock's lifetime too). A batch lost with a killed worker (or box) is dispatched again by
    then, within the lease (ADR 20), and its agents' rounds find the dead worker's locks lapsed
    or retry when they lapse. A batch that waited longer in the queue is claimed again and
    still runs: rounds skip an agent that a newer claim already ran (``RoundRunner.run``'s
    ``claimed_at``), so a backlog costs a lock round trip per agent claimed twice, never a
    second verdict."""
    return takeover_of(settings)


def run_batch(
    runtime: VerifierRuntime, agent_ids: Sequence[str], *, claimed_at: float | None = None
) -> int:
    """The body of ``attest_batch``, usable without Celery (benchmarks, tests of the runner)."""
    runtime.hot.heartbeat(runtime.worker_id)
    fleet = runtime.fleet()
    futures = []
    for agent_id in agent_ids:
        target = fleet.targets.get(agent_id)
        if target is None or target.mode is AgentMode.PUSH:  # removed, or it posts (ADR 19)
            runtime.hot.unschedule(agent_id)
            continue
        policy = fleet.policies.get(target.policy_name)
        ak = fleet.aks.get(agent_id)
        if policy is None or ak is None:
            _cannot_judge(
                runtime, agent_id, target.policy_name, fleet.unusable, fleet.broken_agents
            )
            continue
        round_target = RoundTarget(
            target=target,
            ak=ak,
            policy=policy,
            location_key=fleet.location_keys.get(agent_id),
            receiver=fleet.receivers.get(agent_id),
        )
        futures.append(
            runtime.pool.submit(runtime.runner.start, round_target, claimed_at=claimed_at)
        )
    # Rounds end by themselves (fetch deadlines; their verdicts commit and finish on the
    # committer's writer, ADR 23); this bound only keeps a batch task from hanging on a bug.
    # Rounds still running go on in the pool and finish under their lock.
    done, pending = wait(futures, timeout=runtime.settings.agent_timeout_seconds * 2 + 20)
    if pending:
        log.error("%d round(s) of a batch still running after the batch deadline", len(pending))
    return sum(1 for future in done if future.exception() is None and future.result())


def _cannot_judge(
    runtime: VerifierRuntime,
    agent_id: str,
    policy_name: str,
    unusable: dict[str, str],
    broken: dict[str, str],
) -> None:
    """No verdict is possible: name the fault (the watchdog shows it when the lease runs out) and
    keep the agent scheduled, so that it is judged again as soon as the cause is fixed."""
    if agent_id in broken:
        reason, message = (
            Reason.ROUND_CRASHED,
            f"the agent's stored keys are unusable: {broken[agent_id]}",
        )
    else:
        why = unusable.get(policy_name, "no such policy")
        reason, message = Reason.POLICY_UNUSABLE, f"policy {policy_name} unusable: {why}"
    log.error("agent %s not judged: %s", agent_id, message)
    runtime.hot.mark_fault(agent_id, reason, message)
    runtime.hot.schedule(agent_id, time.time() + runtime.settings.round_interval_seconds)


def expire_leases(runtime: VerifierRuntime) -> int:
    watchdog = Watchdog(
        store=runtime.store,
        hot=runtime.hot,
        committer=runtime.committer,
        publish=runtime.publish,
        lease=runtime.lease,
        origin=runtime.origin,
    )
    return watchdog.expire(runtime.fleet(), dt.datetime.now(dt.UTC))


def sign_checkpoint(runtime: VerifierRuntime, now: dt.datetime | None = None) -> int:
    """The beat task's body: ``sequence_and_sign`` with this process's log and keys."""
    return sequence_and_sign(runtime.log, runtime.log_keys, now or dt.datetime.now(dt.UTC))


def sequence_and_sign(log_store: TransparencyLog, keys: Keyring, now: dt.datetime) -> int:
    """Sequence every queued log entry and sign a checkpoint if the tree grew; the tree size.
    Creates the log keyring (an active and a next key) on first use."""
    keys.ensure(now)
    try:
        while log_store.sequence(now):
            pass
    except Conflict:  # another box's checkpoint task sequenced them: sign what is there
        log.debug("log entries sequenced by another checkpoint task meanwhile")
    signed = log_store.sign(keys.active(), now)
    if signed is not None:  # routine (a kept record every few minutes per agent): debug
        log.debug(
            "checkpoint signed: size %d, root %s…, key %s",
            signed.checkpoint.size,
            signed.checkpoint.root.hex()[:16],
            signed.kid,
        )
    return log_store.head(now).size


def compact_records(runtime: VerifierRuntime) -> int:
    settings = runtime.settings
    now = dt.datetime.now(dt.UTC)
    try:
        folded = runtime.records.fold(
            now=now, hot_window=dt.timedelta(seconds=settings.record_hot_window_seconds)
        )
    except Conflict:  # another box's compaction is folding them: the next run goes on
        log.info("evidence records being folded by another compaction; skipped this run")
        folded = 0
    expired = runtime.records.expire(
        now=now, retention=dt.timedelta(days=settings.record_retention_days)
    )
    if folded or expired:
        log.info("evidence records: %d folded, %d expired", folded, expired)
    return folded + expired
