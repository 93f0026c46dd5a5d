"""A small client of the verifier's ``/v1`` API for the command line: JSON in and out, the
operator's API key on every call, refusals as our own error classes (exit codes follow)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import requests

from geoattest.errors import GeoattestError, VerifierUnreachable, error_from_code
from geoattest.peer_errors import transport_problem, wrong_service

VERIFIER_URL_SETTING = "--verifier (GEOATTEST_VERIFIER_URL)"


class VerifierApi:
    def __init__(self, base_url: str, api_key: str | None, *, timeout: float = 10.0) -> None:
        self._base = base_url.rstrip("/")
        self._timeout = timeout
        self._http = requests.Session()
        if api_key is not None:
            self._http.headers["Authorization"] = f"Bearer {api_key}"

    def call(self, method: str, path: str, body: object | None = None) -> Any:  # noqa: ANN401  # JSON
        """The JSON answer (None for 204); ``VerifierUnreachable`` when no usable answer came."""
        try:
            response = self._http.request(
                method, self._base + path, json=body, timeout=self._timeout
            )
        except requests.RequestException as e:
            raise VerifierUnreachable(
                f"verifier at {self._base} unreachable: {transport_problem(e)}"
            ) from e
        self._check_service(response)
        if not response.ok:
            raise _refusal(response, method, path)
        if response.status_code == 204:
            return None
        try:
            return response.json()
        except ValueError as e:
            raise VerifierUnreachable(f"verifier sent no JSON to {method} {path}") from e

    def _check_service(self, response: requests.Response) -> None:
        """``VerifierUnreachable`` when the answer came from another of our services."""
        other = wrong_service(response, self._base, "verifier", VERIFIER_URL_SETTING)
        if other is not None:
            raise VerifierUnreachable(other)

    def stream(self, path: str) -> Iterator[dict[str, Any]]:
        """The ``data`` of each ``agent_event`` frame of a server-sent event stream, resuming
        after a break from the last id seen (until interrupted)."""
        last = 0
        while True:
            headers = {"Last-Event-ID": str(last)} if last else {}
            try:
                with self._http.get(
                    self._base + path, headers=headers, stream=True, timeout=(self._timeout, 60)
                ) as response:
                    self._check_service(response)
                    if not response.ok:
                        raise _refusal(response, "GET", path)
                    frame: dict[str, str] = {}
                    for line in response.iter_lines(decode_unicode=True):
                        if line:
                            name, _, value = line.partition(":")
                            frame[name] = value.removeprefix(" ")
                            continue
                        if frame.get("event") == "agent_event":
                            last = int(frame.get("id", last))
                            yield json.loads(frame["data"])
                        frame = {}
            except requests.RequestException as e:
                if last == 0:
                    raise VerifierUnreachable(
                        f"verifier at {self._base} unreachable: {transport_problem(e)}"
                    ) from e


def agent_path(agent_id: str, suffix: str = "") -> str:
    return f"/v1/agents/{quote(agent_id, safe='')}{suffix}"


def _refusal(response: requests.Response, method: str, path: str) -> GeoattestError:
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", f"HTTP {response.status_code} on {method} {path}"
    if response.status_code >= 500:
        return VerifierUnreachable(f"verifier failed on {method} {path}: {code}: {message}")
    return error_from_code(code, message)
