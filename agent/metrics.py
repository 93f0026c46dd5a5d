"""The agent's Prometheus instruments, served on ``GET /metrics`` of its API (``agent.api``).

The agent's API is mTLS only, so a scraper presents a client certificate from the verifier's
client CA, as the verifier does (``docs/metrics.md``): the counts say how often and how well the
node answers, which is for the operator, not for anyone on the network.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

__all__ = ["EVIDENCE_REQUESTS", "EVIDENCE_SECONDS", "IMA_ENTRIES_SENT"]

EVIDENCE_REQUESTS = Counter(
    "geoattest_agent_evidence_requests",
    "Evidence requests answered, by result (ok, or the error code answered).",
    ["result"],
)
EVIDENCE_SECONDS = Histogram(
    "geoattest_agent_evidence_seconds",
    "Time to collect evidence (quote, IMA read, location) for one request.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
IMA_ENTRIES_SENT = Counter(
    "geoattest_agent_ima_entries_sent", "IMA log entries sent to the verifier."
)
