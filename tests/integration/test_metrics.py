"""Prometheus metrics on a running simulated fleet (real registrar, verifier API, Celery worker with
two pool processes and beat, redis-server, SQLite): the worker's listener sums its pool's rounds,
fetch errors and record bytes; a tamper shows as an integrity failure with its reason; the API
serves the fleet's gauges through the lease; both ask for a viewer API key."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from geoattest.access.keys import Role
from geoattest.dev.procs import free_port
from geoattest.pcr_banks import PcrBank
from keyrelease.app import KEY_RELEASES
from tests.support.access import bearer, issue_api_key
from tests.support.simulated_fleet import SimulatedFleet, simulated_fleet

pytestmark = [pytest.mark.redis, pytest.mark.slow]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatedFleet]:
    work = tmp_path_factory.mktemp("metrics")
    with simulated_fleet(work, agents=6, worker_metrics_port=free_port()) as running:
        yield running


@pytest.fixture(scope="module")
def viewer(fleet: SimulatedFleet) -> str:
    return issue_api_key(fleet.verifier.settings.database_url, Role.VIEWER, "prometheus")


def _worker_url(fleet: SimulatedFleet) -> str:
    return f"http://127.0.0.1:{fleet.verifier.settings.worker_metrics_port}/metrics"


def _scrape(url: str, key: str) -> Samples:
    response = requests.get(url, headers=bearer(key), timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _total(samples: Samples, name: str, **labels: str) -> float:
    """Sum over every series of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


def _until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_worker_metrics_count_rounds_latency_and_record_bytes(
    fleet: SimulatedFleet, viewer: str
) -> None:
    sim = fleet.attested_agent()
    before = _scrape(_worker_url(fleet), viewer)
    fleet.serve_rounds(sim, 3)
    time.sleep(0.3)  # the last served round commits
    after = _scrape(_worker_url(fleet), viewer)
    passed = _value(after, "geoattest_rounds_total", outcome="passed", reason="")
    assert passed >= _value(before, "geoattest_rounds_total", outcome="passed", reason="") + 3
    count = _value(after, "geoattest_round_seconds_count", outcome="passed")
    assert count == passed  # every counted round was timed
    assert _value(after, "geoattest_round_seconds_sum", outcome="passed") > 0
    assert _value(after, "geoattest_record_bytes_total") > _value(
        before, "geoattest_record_bytes_total"
    )


def test_a_tamper_shows_as_an_integrity_failure_with_its_reason(
    fleet: SimulatedFleet, viewer: str
) -> None:
    sim = fleet.attested_agent()
    before = _scrape(_worker_url(fleet), viewer)
    assert _total(before, "geoattest_rounds_total", outcome="integrity_failure") == 0
    sim.pcrs[PcrBank.SHA256][10] = bytes(32)  # PCR 10 no longer matches the IMA log
    fleet.verifier.wait_for_state(sim.agent_id, "failed")
    after = _scrape(_worker_url(fleet), viewer)
    failed = {
        dict(labels)["reason"]: value
        for (name, labels), value in after.items()
        if name == "geoattest_rounds_total" and dict(labels)["outcome"] == "integrity_failure"
    }
    assert sum(failed.values()) == 1, failed  # one failed round: the agent is not polled after
    status = fleet.verifier.status(sim.agent_id)
    assert failed == {status["reason"]: 1.0}


def test_an_unreachable_agent_counts_fetch_errors_by_kind(
    fleet: SimulatedFleet, viewer: str
) -> None:
    sim = fleet.attested_agent()
    fleet.server.offline.add(sim.agent_id)
    try:
        fleet.verifier.wait_for_state(sim.agent_id, "unreachable")
        samples = _scrape(_worker_url(fleet), viewer)
        kinds = {
            dict(labels)["kind"]: value
            for (name, labels), value in samples.items()
            if name == "geoattest_fetch_errors_total"
        }
        assert kinds, samples
        assert set(kinds) <= {"agent_unreachable", "agent_deadline_exceeded"}, kinds
        unreachable = _total(samples, "geoattest_rounds_total", outcome="unreachable")
        assert unreachable == sum(kinds.values())
    finally:
        fleet.server.offline.discard(sim.agent_id)
    fleet.verifier.wait_for_state(sim.agent_id, "attested")


def test_the_api_serves_agents_per_state_lease_margins_and_the_queue(
    fleet: SimulatedFleet, viewer: str
) -> None:
    sim = fleet.attested_agent()
    url = fleet.verifier.url + "/metrics"
    samples = _scrape(url, viewer)
    counts = requests.get(fleet.verifier.url + "/v1/fleet", headers=bearer(viewer), timeout=10)
    for state, count in counts.json()["counts"].items():
        # the fleet may move between the two reads only by an attested agent's next round
        assert _value(samples, "geoattest_agents", state=state) == count, state
    margin = _value(samples, "geoattest_lease_margin_seconds", agent=sim.agent_id)
    max_age = fleet.verifier.status(sim.agent_id)["lease_max_age_seconds"]
    assert isinstance(max_age, float)
    assert 0 < margin <= max_age
    assert _value(samples, "geoattest_workers") >= 1  # the pool processes heartbeat
    assert ("geoattest_due_backlog", frozenset()) in samples
    assert _value(samples, "geoattest_queue_lag_seconds") < 30
    # A paused agent has no lease: its margin series is gone, and it counts as paused.
    assert fleet.verifier.act(sim.agent_id, "pause").status_code == 200
    paused = _scrape(url, viewer)
    assert ("geoattest_lease_margin_seconds", frozenset({("agent", sim.agent_id)})) not in paused
    assert _value(paused, "geoattest_agents", state="paused") >= 1


def test_both_listeners_ask_for_a_viewer_key(fleet: SimulatedFleet) -> None:
    for url in (_worker_url(fleet), fleet.verifier.url + "/metrics"):
        for headers, status, code in (
            ({}, 401, "api_key_required"),
            ({"Authorization": "Bearer gak_0123"}, 401, "api_key_invalid"),
        ):
            answer = requests.get(url, headers=headers, timeout=10)
            assert answer.status_code == status, (url, answer.text)
            assert answer.json()["error"]["code"] == code
    other = requests.get(_worker_url(fleet).replace("/metrics", "/v1/agents"), timeout=10)
    assert other.status_code == 404


def test_the_alert_rules_and_dashboard_name_only_metrics_that_exist(
    fleet: SimulatedFleet, viewer: str
) -> None:
    """Every ``geoattest_*`` name in deploy/prometheus/alerts.yml and the Grafana dashboard is a
    metric the verifier (API or worker) or the key service exposes."""
    fleet.attested_agent()
    exposed = set()
    for url in (_worker_url(fleet), fleet.verifier.url + "/metrics"):
        text = requests.get(url, headers=bearer(viewer), timeout=10).text
        exposed |= {family.name for family in text_string_to_metric_families(text)}
    exposed |= {family.name for family in KEY_RELEASES.collect()}
    for path in (DEPLOY / "prometheus" / "alerts.yml", DEPLOY / "grafana" / "geoattest-fleet.json"):
        named = {
            re.sub(r"_(total|bucket|sum|count)$", "", name)
            for name in re.findall(r"geoattest_[a-z_]+", path.read_text())
        }
        assert named, path
        assert named <= exposed, (path.name, sorted(named - exposed))
