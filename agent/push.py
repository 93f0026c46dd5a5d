"""Push mode (ADR 19): the agent opens every connection itself, for nodes nobody can reach.

Each round: ask the verifier's push listener for a challenge (it names the nonce and what to
quote, as a pull round's ``EvidenceRequest`` would), collect the evidence with the same
``EvidenceService`` the pull API uses, and post it. Both calls go over mTLS with the agent's
registered certificate (the one ``agent enrol`` registered; the verifier trusts nothing else)
and trust the listener through ``verifier_client_ca`` (its certificate is issued by that CA).

A failed round is logged and retried at the next interval: if posts stop getting through, the
verifier's lease runs out and the agent shows ``stale``, never ``failed``.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import requests

from agent.evidence import EvidenceService
from geoattest.errors import GeoattestError, GnssUnavailable, PushRefused, VerifierUnreachable
from geoattest.peer_errors import transport_problem
from geoattest.untrusted import error_code, printable
from geoattest.wire_push import (
    PushChallengeRequest,
    PushChallengeView,
    PushEvidencePost,
    PushVerdictView,
)

__all__ = ["PushClient"]

log = logging.getLogger(__name__)


class PushClient:
    """Rounds of one push agent against ``push_url``."""

    def __init__(
        self,
        push_url: str,
        agent_id: str,
        service: EvidenceService,
        *,
        client_cert: tuple[Path, Path],
        verifier_ca: Path,
        timeout: float,
    ) -> None:
        self._url = push_url.rstrip("/")
        self._agent_id = agent_id
        self._service = service
        self._timeout = timeout
        self._http = requests.Session()
        self._http.cert = (str(client_cert[0]), str(client_cert[1]))
        # Per request: a session's ``verify`` loses to REQUESTS_CA_BUNDLE in the environment.
        self._verify = str(verifier_ca)

    def challenge(self) -> PushChallengeView:
        body = PushChallengeRequest(agent_id=self._agent_id).model_dump_json()
        return PushChallengeView.model_validate_json(self._call("/v1/push/challenge", body))

    def post(self, challenge: PushChallengeView) -> PushVerdictView:
        """Quote for ``challenge`` and post the evidence; the verifier's verdict."""
        request = challenge.request
        try:
            evidence = self._service.collect(request)
        except GnssUnavailable as e:
            if not request.include_location:
                raise
            # As a pull agent's refusal does: the verifier judges the round without location
            # (``location_missing`` under a geofencing policy), rather than never hearing of it.
            log.warning("posting evidence without location: %s", e.message)
            evidence = self._service.collect(request.model_copy(update={"include_location": False}))
        body = PushEvidencePost(
            agent_id=self._agent_id, nonce=challenge.request.nonce, evidence=evidence
        ).model_dump_json(exclude_defaults=True)
        return PushVerdictView.model_validate_json(self._call("/v1/push/evidence", body))

    def round(self) -> PushVerdictView:
        """One push round: challenge, quote, post; once more at once when the verifier says
        the challenge went stale (a round of ours committed after it was issued)."""
        try:
            return self.post(self.challenge())
        except PushRefused as e:
            if e.peer_code != "push_challenge_stale":
                raise
            log.info("push challenge went stale; asking for a new one")
            return self.post(self.challenge())

    def run(self, interval: float, stop: threading.Event) -> None:
        """Push a round every ``interval`` seconds until ``stop`` is set; failures are logged."""
        while not stop.is_set():
            try:
                verdict = self.round()
                log.debug("push round: %s -> %s", verdict.outcome, verdict.state)
                if verdict.outcome != "passed":
                    log.warning(
                        "push round %s: %s (%s)", verdict.outcome, verdict.reason, verdict.message
                    )
            except GeoattestError as e:
                log.warning("push round not done: %s (%s)", e.message, e.code)
            stop.wait(interval)

    def close(self) -> None:
        self._http.close()

    def _call(self, path: str, body: str) -> bytes:
        try:
            response = self._http.post(
                self._url + path,
                data=body.encode(),
                headers={"Content-Type": "application/json"},
                timeout=self._timeout,
                verify=self._verify,
            )
        except requests.RequestException as e:
            raise VerifierUnreachable(
                f"push listener at {self._url}: {transport_problem(e)}"
            ) from e
        if response.status_code != 200:
            code = _peer_code(response)
            raise PushRefused(
                f"push listener answered {response.status_code} ({code or 'no error code'}): "
                f"{printable(response.text[:200])}",
                code,
            )
        return response.content


def _peer_code(response: requests.Response) -> str | None:
    try:
        return error_code(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None
