"""HTTP client for the registrar's ``/v1`` API, used by agents (enrolment) and the verifier.

Agent ids are checked against ``wire.AGENT_ID_PATTERN`` before they go into a URL, and quoted
(``urllib.parse.quote(id, safe="")``) when they do: an id can never name another path, query
or record. An answer about an agent must be about the agent asked for, or it is refused with
``RegistrarAnswerInvalid``. Requests omit fields at their default (peers tolerate skew).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TypeVar
from urllib.parse import quote

import requests
from pydantic import BaseModel, ValidationError

from geoattest.errors import (
    AgentIdInvalid,
    GeoattestError,
    RegistrarAnswerInvalid,
    RegistrarUnreachable,
    error_from_code,
)
from geoattest.peer_errors import transport_problem, wrong_service
from geoattest.settings import Settings
from geoattest.wire import (
    AGENT_ID_RULE,
    ActivateRequest,
    AgentList,
    AgentView,
    EnrolRequest,
    EnrolResponse,
    JsonValue,
    enrolment_body,
    is_agent_id,
)

log = logging.getLogger(__name__)

Model = TypeVar("Model", bound=BaseModel)
REGISTRAR_URL_SETTING = "--registrar (GEOATTEST_REGISTRAR_URL)"


class RegistrarClient:
    """Talks to one registrar. Refusals come back as the registrar's own error class and code."""

    def __init__(self, base_url: str, *, timeout: float = 10.0, api_key: str | None = None) -> None:
        """``api_key``: presented on every call (reading identities needs role viewer, deleting
        admin; enrolment needs none, the TPM proves the caller)."""
        self._base = base_url.rstrip("/")
        self._timeout = timeout
        self._http = requests.Session()
        if api_key is not None:
            self._http.headers["Authorization"] = f"Bearer {api_key}"

    def close(self) -> None:
        self._http.close()

    def enrol(self, body: EnrolRequest) -> EnrolResponse:
        """Post ``wire.enrolment_body(body)``, the JSON object whose digest the proof binds."""
        answer = self._call("POST", "/v1/agents", EnrolResponse, enrolment_body(body))
        return _for_agent(answer, body.agent_id, "POST /v1/agents")

    def activate(self, agent_id: str, proof: bytes) -> AgentView:
        path = _agent_path(agent_id, "/activate")
        body = ActivateRequest(proof=proof.hex()).model_dump(mode="json", exclude_defaults=True)
        return _for_agent(self._call("POST", path, AgentView, body), agent_id, "POST " + path)

    def get_agent(self, agent_id: str) -> AgentView:
        path = _agent_path(agent_id)
        return _for_agent(self._call("GET", path, AgentView), agent_id, "GET " + path)

    def list_agents(self) -> AgentList:
        return self._call("GET", "/v1/agents", AgentList)

    def delete_agent(self, agent_id: str) -> None:
        self._send("DELETE", _agent_path(agent_id), None, {})

    def _call(
        self,
        method: str,
        path: str,
        answer: type[Model],
        body: Mapping[str, JsonValue] | None = None,
    ) -> Model:
        response = self._send(method, path, body, {})
        try:
            return answer.model_validate(response.json())
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "answer"
            raise RegistrarUnreachable(
                f"registrar at {self._base} sent an answer to {method} {path} that is not a "
                f"registrar's: {e.error_count()} problem(s), first {where}: {first['msg']}"
            ) from e
        except ValueError as e:
            raise RegistrarUnreachable(
                f"registrar at {self._base} sent no JSON to {method} {path}"
            ) from e

    def _send(
        self, method: str, path: str, body: Mapping[str, JsonValue] | None, headers: dict[str, str]
    ) -> requests.Response:
        url = self._base + path
        try:
            response = self._http.request(
                method, url, json=body, headers=headers, timeout=self._timeout
            )
        except requests.RequestException as e:
            raise RegistrarUnreachable(
                f"registrar at {self._base} unreachable: {transport_problem(e)}"
            ) from e
        other = wrong_service(response, self._base, "registrar", REGISTRAR_URL_SETTING)
        if other is not None:
            raise RegistrarUnreachable(other)
        if response.ok:
            return response
        raise _refusal(response, method, path)


def _agent_path(agent_id: str, suffix: str = "") -> str:
    """``/v1/agents/<quoted id><suffix>``; raises ``AgentIdInvalid`` (nothing is sent) for an id
    the registrar would refuse, such as ``..`` that HTTP clients resolve to another path."""
    if not is_agent_id(agent_id):
        raise AgentIdInvalid(f"{agent_id[:80]!a} is not an agent id: {AGENT_ID_RULE}")
    return f"/v1/agents/{quote(agent_id, safe='')}{suffix}"


AboutAgent = TypeVar("AboutAgent", AgentView, EnrolResponse)


def _for_agent(answer: AboutAgent, agent_id: str, call: str) -> AboutAgent:
    """``answer`` if it is about ``agent_id``; ``RegistrarAnswerInvalid`` otherwise."""
    if answer.agent_id != agent_id:
        raise RegistrarAnswerInvalid(
            f"registrar answered {call} for agent {answer.agent_id!r}, not {agent_id!r}: "
            "refusing the answer"
        )
    return answer


def _refusal(response: requests.Response, method: str, path: str) -> GeoattestError:
    """A 4xx is the registrar refusing us (its own error class); a 5xx is a fault to retry later."""
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", f"HTTP {response.status_code} on {method} {path}"
    if response.status_code >= 500:
        return RegistrarUnreachable(
            f"registrar failed on {method} {path} ({response.status_code} {code}): {message}"
        )
    return error_from_code(code, message)


def verifier_registrar_client(settings: Settings) -> RegistrarClient:
    """The client the verifier's processes read identities with: ``registrar_api_key`` (a
    ``viewer`` key of the registrar)."""
    key = settings.registrar_api_key
    return RegistrarClient(
        settings.registrar_url,
        timeout=settings.http_timeout_seconds,
        api_key=key.get_secret_value() if key else None,
    )
