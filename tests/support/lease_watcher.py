"""The lease invariant, watched from outside: no agent reads ``attested`` through the API when its
last passed round is older than its lease's max age, whatever else is broken meanwhile."""

from __future__ import annotations

import datetime as dt
import threading
import time

import requests

from tests.support.verifier_stack import RunningVerifier

SLACK = 1.0  # API polling and clock granularity


class LeaseWatcher:
    """Polls every agent through the API and records any ``attested`` past its lease.

    Only an unreachable API (restarting, 503) is skipped; a listing that lacks or garbles the
    fields the invariant needs is a violation, not noise. ``polls`` counts the listings judged
    (``stop`` waits for one more, so a case ends with the API judged again)."""

    def __init__(self, verifier: RunningVerifier) -> None:
        self._verifier = verifier
        self.violations: list[dict[str, object]] = []
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            try:
                answer = self._verifier.get("/v1/agents")
            except requests.RequestException:
                continue  # the API is restarting; nothing to judge
            if answer.status_code != 200:
                continue  # 503 while a dependency is down: it vouches for nobody
            now = dt.datetime.now(dt.UTC)
            self.polls += 1
            for agent in answer.json()["agents"]:
                self._judge(agent, now)

    def _judge(self, agent: dict[str, object], now: dt.datetime) -> None:
        if agent["state"] != "attested":
            return
        try:
            passed = dt.datetime.fromisoformat(str(agent["last_passed_at"]))
            max_age = float(str(agent["lease_max_age_seconds"]))
        except (KeyError, ValueError) as e:
            self.violations.append({"agent": agent, "unreadable": str(e)})
            return
        age = (now - passed).total_seconds()
        if age > max_age + SLACK:
            self.violations.append({"agent": agent, "age": age})

    def wait_for_poll(self, timeout: float = 10.0) -> None:
        """Until one more listing has been judged (the API answers again)."""
        seen = self.polls
        deadline = time.monotonic() + timeout
        while self.polls == seen:
            assert time.monotonic() < deadline, f"no agent listing judged in {timeout:.0f} s"
            time.sleep(0.05)

    def stop(self) -> None:
        """Judge one last listing, then stop."""
        self.wait_for_poll()
        self._stop.set()
        self._thread.join(timeout=5)
