"""The names of the verifier's Celery tasks (what beat sends and workers run)."""

DISPATCH_TASK = "geoattest.verifier.dispatch"
RECONCILE_TASK = "geoattest.verifier.reconcile"
WATCHDOG_TASK = "geoattest.verifier.watchdog"
COMPACT_TASK = "geoattest.verifier.compact"
CHECKPOINT_TASK = "geoattest.verifier.checkpoint"
BATCH_TASK = "geoattest.verifier.attest_batch"
WEBHOOK_TASK = "geoattest.verifier.deliver_webhook"
