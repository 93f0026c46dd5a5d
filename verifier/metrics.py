"""The verifier's Prometheus instruments: what its processes count as they work.

Counters and histograms live here, in prometheus_client's process registry, as that library
intends: the API process and each Celery pool process count their own rounds, fetch errors,
tokens, webhook deliveries and record bytes. In a worker the values go to files in
``PROMETHEUS_MULTIPROC_DIR`` (``verifier.metrics_dir`` prepares it before prometheus_client is
imported) and the worker's main process serves the sum; the API serves its own. The fleet's
gauges (agents per state, lease margins, due backlog) are not counted anywhere: they are read
from the store and Redis at scrape time (``verifier.web.metrics``).

Label values come from closed sets (``Outcome``, ``Reason``, error codes, token types), never
from agents' input, so an attacker cannot grow the series count.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

__all__ = [
    "FETCH_ERRORS",
    "RECORD_BYTES",
    "ROUNDS",
    "ROUND_SECONDS",
    "TOKENS_ISSUED",
    "TOKENS_REFUSED",
    "WEBHOOK_DELIVERIES",
]

ROUNDS = Counter(
    "geoattest_rounds",
    "Rounds judged, by outcome (passed, rebooted, integrity_failure, unreachable, "
    "verifier_fault) and reason code (empty for a pass).",
    ["outcome", "reason"],
)
ROUND_SECONDS = Histogram(
    "geoattest_round_seconds",
    "Time from a round's start (lock held) to its verdict, fetch and checks included.",
    ["outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
FETCH_ERRORS = Counter(
    "geoattest_fetch_errors",
    "Evidence fetches that brought no usable answer, by kind (the reachability error code).",
    ["kind"],
)
RECORD_BYTES = Counter(
    "geoattest_record_bytes",
    "Bytes of evidence records written (canonical JSON of each committed record).",
)
TOKENS_ISSUED = Counter("geoattest_tokens_issued", "Tokens issued, by type (por, pog).", ["type"])
TOKENS_REFUSED = Counter(
    "geoattest_tokens_refused", "Token requests refused, by error code.", ["code"]
)
WEBHOOK_DELIVERIES = Counter(
    "geoattest_webhook_deliveries",
    "Webhook delivery attempts, by result (delivered, retrying, gave_up).",
    ["result"],
)
