"""The dashboard on a running simulated fleet (real registrar, verifier API, Celery worker and beat,
redis-server, SQLite): the fleet and event routes, the live stream (a state change within 2 s),
and the page in Debian's chromium driven by Playwright, which logs in, sees the agents and the
map, watches a tamper turn an agent ``failed`` and makes no request beyond 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy.orm import Session

from agent.gnss.spec import open_source
from agent.location import LocationProvider
from geoattest.access.keys import Role
from geoattest.db import make_engine
from geoattest.dev.demo_geo import DEMO_DIR
from geoattest.pcr_banks import PcrBank
from tests.support.access import bearer, issue_api_key
from tests.support.agent_simulator import policy_document
from tests.support.simulated_fleet import SimulatedFleet, simulated_fleet
from verifier.storage.models import TokenRow

pytestmark = [pytest.mark.redis, pytest.mark.slow]

CHROMIUM = shutil.which("chromium")
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "img"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatedFleet]:
    """Seven agents without location, and one (``located``) that the browser test walks along
    the southern border of the demo zone ``berlin``."""
    with simulated_fleet(
        tmp_path_factory.mktemp("dash"), agents=8, located=1, zones_file=DEMO_DIR / "zones.geojson"
    ) as running:
        yield running


@pytest.fixture
def border(fleet: SimulatedFleet) -> Iterator[str]:
    """The located agent on the demo track ``border`` (replayed at the current time) under a
    policy that wants it inside ``berlin``: its accuracy disc always crosses the border, so its
    rounds fail, ``uncertain``."""
    agent_id = fleet.located[0]
    sim = fleet.sims[agent_id]
    provider = LocationProvider(
        open_source(f"file:{DEMO_DIR / 'tracks' / 'border.nmea'}?live"), None
    )
    provider.start()
    sim.location = provider
    geo = {
        **policy_document(sim),
        "location": {"zones": ["berlin"], "thresholds": {"accepted_sources": ["file"]}},
    }
    assert fleet.verifier.put_policy("geo", geo).status_code == 200
    assert fleet.verifier.add_agent(agent_id, "geo").status_code == 201
    try:
        yield agent_id
    finally:
        sim.location = None
        provider.close()


@pytest.fixture(scope="module")
def viewer(fleet: SimulatedFleet) -> str:
    return issue_api_key(fleet.verifier.settings.database_url, Role.VIEWER, "dash-viewer")


def _get(fleet: SimulatedFleet, key: str, path: str) -> requests.Response:
    return requests.get(fleet.verifier.url + path, headers=bearer(key), timeout=10)


class Stream:
    """A reader of /v1/events/stream in a thread: frames as they arrive, with their times."""

    def __init__(self, url: str, key: str, headers: dict[str, str] | None = None) -> None:
        self.frames: list[tuple[float, dict[str, str]]] = []
        self.ready = threading.Event()
        self._response = requests.get(
            url + "/v1/events/stream",
            headers={**bearer(key), **(headers or {})},
            stream=True,
            timeout=(5, 30),
        )
        assert self._response.status_code == 200, self._response.text
        assert self._response.headers["Content-Type"].startswith("text/event-stream")
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self.ready.wait(10), "the stream never said ready"

    def _read(self) -> None:
        frame: dict[str, str] = {}
        try:
            for line in self._response.iter_lines(decode_unicode=True):
                if line == "":
                    if frame.get("event") == "ready":
                        self.ready.set()
                    elif frame:
                        self.frames.append((time.monotonic(), frame))
                    frame = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    frame[name] = value.removeprefix(" ")
        except (requests.RequestException, AttributeError):  # closed by the test
            return

    def events(self) -> list[dict[str, object]]:
        return [json.loads(f["data"]) for _, f in self.frames if f.get("event") == "agent_event"]

    def wait_for(
        self, agent_id: str, to_state: str, timeout: float
    ) -> tuple[float, dict[str, str]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, frame in self.frames:
                body = json.loads(frame.get("data", "{}"))
                if body.get("agent_id") == agent_id and body.get("to_state") == to_state:
                    return at, frame
            time.sleep(0.02)
        pytest.fail(f"no event {agent_id} -> {to_state} in {timeout} s: {self.events()}")

    def close(self) -> None:
        self._response.close()


def test_the_fleet_overview_counts_states_through_the_lease(
    fleet: SimulatedFleet, viewer: str
) -> None:
    sim = fleet.attested_agent()
    body = _get(fleet, viewer, "/v1/fleet").json()
    agents = {agent["agent_id"]: agent for agent in body["agents"]}
    assert agents[sim.agent_id]["state"] == "attested"
    assert agents[sim.agent_id]["lease_remaining_seconds"] > 0
    assert agents[sim.agent_id]["position"] is None  # no location evidence in this fleet
    assert body["counts"]["attested"] == sum(a["state"] == "attested" for a in agents.values())
    assert sum(body["counts"].values()) == len(agents)
    assert _get(fleet, viewer, "/v1/whoami").json()["role"] == "viewer"
    held = _get(fleet, viewer, f"/v1/agents/{sim.agent_id}/identity").json()
    assert len(held["ak_sha256"]) == 64
    assert held["ek_certificate_sha256"] is not None


def test_a_state_change_reaches_the_stream_within_two_seconds(
    fleet: SimulatedFleet, viewer: str
) -> None:
    sim = fleet.attested_agent()
    stream = Stream(fleet.verifier.url, viewer)
    try:
        asked = time.monotonic()
        assert fleet.verifier.act(sim.agent_id, "pause").status_code == 200
        at, frame = stream.wait_for(sim.agent_id, "paused", timeout=5)
        assert at - asked < 2.0, f"the event took {at - asked:.2f} s"
        assert int(frame["id"]) > 0
        sim.pcrs[PcrBank.SHA256][10] = bytes(32)  # tampered while paused: seen once resumed
        assert fleet.verifier.act(sim.agent_id, "resume").status_code == 200
        _, failed = stream.wait_for(sim.agent_id, "failed", timeout=15)
        assert json.loads(failed["data"])["type"] == "agent_failed"
    finally:
        stream.close()
    # A stream that resumes from an id first replays what it missed, in order.
    events = _get(fleet, viewer, f"/v1/events?agent={sim.agent_id}").json()["events"]
    first = events[0]["id"]
    again = Stream(fleet.verifier.url, viewer, {"Last-Event-ID": str(first)})
    try:
        deadline = time.monotonic() + 5
        while len(again.events()) < len(events) - 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        replayed = [e["id"] for e in again.events() if e["agent_id"] == sim.agent_id]
        assert replayed == [e["id"] for e in events[1:]]
    finally:
        again.close()


def test_stream_and_event_arguments_are_checked(fleet: SimulatedFleet, viewer: str) -> None:
    for path in ("/v1/events?after_id=x", "/v1/events?agent=../x", "/v1/events?limit=100000"):
        answer = _get(fleet, viewer, path)
        assert answer.status_code == 400, path
        assert answer.json()["error"]["code"] == "malformed_request"
    answer = requests.get(
        fleet.verifier.url + "/v1/events/stream",
        headers={**bearer(viewer), "Last-Event-ID": "-1"},
        timeout=5,
    )
    assert answer.status_code == 400
    assert _get(fleet, viewer, "/v1/agents/nobody/identity").status_code == 404


def test_viewers_see_what_tokens_were_issued_never_the_tokens(
    fleet: SimulatedFleet, viewer: str
) -> None:
    agent_id = next(iter(fleet.sims))
    stored_jws = "eyJhbGciOiJFUzI1NiJ9.c2VjcmV0LWNsYWltcw.c2lnbmF0dXJl"  # a stand-in JWS
    now = dt.datetime.now(dt.UTC)
    engine = make_engine(fleet.verifier.settings.database_url)
    with Session(engine) as session, session.begin():
        session.add(
            TokenRow(jti="dash-jti-1", agent_id=agent_id, type="por", audience="svc",
                     workload_sha256=bytes(32), issued_at=now,
                     expires_at=now + dt.timedelta(minutes=5), record_seq=1, token=stored_jws)
        )  # fmt: skip
    engine.dispose()
    answer = _get(fleet, viewer, f"/v1/agents/{agent_id}/tokens")
    assert answer.status_code == 200
    assert [t["jti"] for t in answer.json()["tokens"]] == ["dash-jti-1"]
    assert stored_jws not in answer.text
    assert "c2lnbmF0dXJl" not in answer.text


def test_activity_counts_rounds_latency_failures_and_tokens_in_buckets(
    fleet: SimulatedFleet, viewer: str
) -> None:
    sim = fleet.attested_agent()
    fleet.serve_rounds(sim, 3)
    body = _get(fleet, viewer, "/v1/fleet/activity?seconds=120").json()
    assert len(body["buckets"]) == 30
    assert body["bucket_seconds"] == 4.0
    assert body["truncated"] is False
    passed = sum(bucket["rounds"].get("passed", 0) for bucket in body["buckets"])
    assert passed >= 3
    latencies = [b["latency_p95_seconds"] for b in body["buckets"] if b["rounds"]]
    assert latencies
    assert all(0 <= value < 5 for value in latencies)
    sim.pcrs[PcrBank.SHA256][10] = bytes(32)
    fleet.verifier.wait_for_state(sim.agent_id, "failed")
    after = _get(fleet, viewer, "/v1/fleet/activity?seconds=120").json()["buckets"]
    assert sum(bucket["rounds"].get("integrity_failure", 0) for bucket in after) >= 1
    # Tokens in the ledger count in the bucket of their issue time: two now, one before.
    stand_in = "x.y.z"  # a stand-in JWS
    before = sum(bucket["tokens_issued"] for bucket in after)
    now = dt.datetime.now(dt.UTC)
    engine = make_engine(fleet.verifier.settings.database_url)
    with Session(engine) as session, session.begin():
        for n, issued in enumerate((now, now, now - dt.timedelta(minutes=30))):
            session.add(
                TokenRow(jti=f"activity-{n}", agent_id=sim.agent_id, type="pog", audience="svc",
                         workload_sha256=bytes(32), issued_at=issued,
                         expires_at=issued + dt.timedelta(minutes=5), record_seq=1, token=stand_in)
            )  # fmt: skip
    engine.dispose()
    buckets = _get(fleet, viewer, "/v1/fleet/activity?seconds=120").json()["buckets"]
    assert sum(bucket["tokens_issued"] for bucket in buckets) == before + 2
    assert buckets[-1]["tokens_issued"] >= 2
    for bad in ("seconds=10", "seconds=abc", "seconds=99999"):
        answer = _get(fleet, viewer, f"/v1/fleet/activity?{bad}")
        assert answer.status_code == 400, bad
        assert answer.json()["error"]["code"] == "malformed_request"


def test_the_page_is_public_holds_no_data_and_allows_this_origin_only(
    fleet: SimulatedFleet,
) -> None:
    page = requests.get(fleet.verifier.url + "/dashboard/", timeout=5)
    assert page.status_code == 200
    assert "geoattest fleet" in page.text
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assert "'unsafe-inline'" not in policy
    for name in ("app.js", "countries.geojson", "vendor/leaflet/leaflet-src.esm.js"):
        assert requests.get(f"{fleet.verifier.url}/dashboard/{name}", timeout=5).status_code == 200
    for outside in ("../app.py", "..%2Fapp.py", "%2e%2e/fleet_api.py"):
        answer = requests.get(f"{fleet.verifier.url}/dashboard/{outside}", timeout=5)
        assert answer.status_code == 404, outside
    assert requests.get(fleet.verifier.url + "/v1/fleet", timeout=5).status_code == 401


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_the_dashboard_in_a_browser_shows_a_tamper_live(
    fleet: SimulatedFleet, viewer: str, border: str, tmp_path: Path
) -> None:
    from playwright.sync_api import Request, expect, sync_playwright

    sims = [fleet.attested_agent(), fleet.attested_agent()]
    victim = sims[0]
    fleet.verifier.wait_for_state(border, "failed", timeout=30)
    status = fleet.verifier.status(border)
    assert status["reason"] == "location_outside_zone", status
    listed = {a["agent_id"]: a for a in _get(fleet, viewer, "/v1/fleet").json()["agents"]}
    position = listed[border]["position"]
    assert (position["decision"], position["zone"], position["verdict"]) == (
        "uncertain",
        "berlin",
        "failed",
    ), position
    assert 0 <= position["distance_m"] <= position["accuracy_m"], position  # the disc crosses
    requested: list[str] = []
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})

            def seen(request: Request) -> None:
                requested.append(request.url)

            page.on("request", seen)
            page.goto(fleet.verifier.url + "/dashboard/")
            page.fill("#api-key", viewer)
            page.click("#login-form button[type=submit]")
            row = page.locator(f'tr[data-agent-id="{victim.agent_id}"]')
            expect(row.locator("[data-state]")).to_have_text("attested", timeout=10_000)
            # The border agent: failed, and its zone decision seen as uncertain, not unknown.
            border_row = page.locator(f'tr[data-agent-id="{border}"]')
            expect(border_row.locator("[data-state]")).to_have_text("failed")
            expect(border_row.locator("span.decision")).to_have_text("uncertain")
            expect(page.locator("#map path.node.decision-uncertain")).to_have_count(1)
            expect(page.locator("#map path.decision-unknown")).to_have_count(0)
            expect(page.locator("#live")).to_have_attribute("data-live", "live", timeout=10_000)
            # The map fits the zones and the nodes (Berlin): the border node is drawn there.
            expect(page.locator("#map path.node.decision-uncertain")).to_be_visible()
            assert page.locator("#map svg path").count() > 100  # the country outlines
            # The charts: rounds drawn as bars, latency as lines, one lease bar per attested agent.
            expect(page.locator('[data-chart="rounds"] rect.o-passed').first).to_be_attached()
            expect(page.locator('[data-chart="latency"] polyline.p95')).to_be_attached()
            attested = _get(fleet, viewer, "/v1/fleet").json()["counts"]["attested"]
            assert 0 < page.locator('[data-chart="leases"] rect').count() <= min(attested + 1, 20)
            expect(page.locator('[data-chart="rounds"] .latest')).to_contain_text("rounds/s now")
            page.screenshot(path=str(shots / "dashboard-overview.png"), full_page=True)

            victim.measure("/usr/bin/evil", digest=os.urandom(32))
            tampered = time.monotonic()
            expect(row.locator("[data-state]")).to_have_text("failed", timeout=10_000)
            shown = time.monotonic() - tampered
            expect(row.locator("td.reason")).to_have_text("ima_entry_not_allowed")
            row.click()
            expect(page.locator("#detail-failure")).to_contain_text("/usr/bin/evil")
            expect(page.locator("#timeline li").first).to_be_visible()
            expect(page.locator("#actions")).to_be_hidden()  # a viewer key: no admin actions
            page.screenshot(path=str(shots / "dashboard-failed.png"), full_page=True)
            page.set_viewport_size({"width": 390, "height": 844})
            page.screenshot(path=str(shots / "dashboard-phone.png"), full_page=False)
        finally:
            browser.close()
    hosts = {urlsplit(url).hostname for url in requested}
    assert hosts == {"127.0.0.1"}, sorted(set(requested))
    assert shown < 8.0, f"failed on the page {shown:.1f} s after the tamper"
    if os.environ.get("GEOATTEST_UPDATE_SCREENSHOTS"):
        for shot in shots.iterdir():
            shutil.copy(shot, DOCS_IMAGES / shot.name)


def test_the_verifier_cli_lists_shows_acts_and_reports_by_exit_code(
    fleet: SimulatedFleet, viewer: str
) -> None:
    from click.testing import CliRunner

    from geoattest.cli import main

    sim = fleet.attested_agent()
    runner = CliRunner()
    admin = {
        "GEOATTEST_API_KEY": fleet.verifier.api_key,
        "GEOATTEST_VERIFIER_URL": fleet.verifier.url,
    }
    listed = runner.invoke(main, ["verifier", "agents", "list"], env=admin)
    assert listed.exit_code == 0, listed.output
    assert any(
        line.split()[:2] == [sim.agent_id, "attested"] for line in listed.output.splitlines()
    )
    as_json = runner.invoke(main, ["verifier", "agents", "list", "--json"], env=admin)
    assert sim.agent_id in {a["agent_id"] for a in json.loads(as_json.stdout)["agents"]}
    paused = runner.invoke(main, ["verifier", "agents", "pause", sim.agent_id, "--json"], env=admin)
    assert paused.exit_code == 0, paused.output
    assert json.loads(paused.stdout)["state"] == "paused"
    shown = runner.invoke(main, ["verifier", "events", "--agent", sim.agent_id], env=admin)
    assert "attested -> paused operator_paused" in shown.output
    as_viewer = {**admin, "GEOATTEST_API_KEY": viewer}
    refused = runner.invoke(main, ["verifier", "agents", "resume", sim.agent_id], env=as_viewer)
    assert refused.exit_code == 2
    assert "role_insufficient" in refused.output
    missing = runner.invoke(main, ["verifier", "agents", "show", "nobody"], env=admin)
    assert (missing.exit_code, "not_found" in missing.output) == (2, True)
    gone = runner.invoke(
        main, ["verifier", "agents", "list", "--verifier", "http://127.0.0.1:9"], env=admin
    )
    assert gone.exit_code == 3
    assert "verifier_unreachable" in gone.output
    assert (
        runner.invoke(main, ["verifier", "agents", "resume", sim.agent_id], env=admin).exit_code
        == 0
    )
