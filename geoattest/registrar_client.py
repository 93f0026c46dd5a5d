"""HTTP client for the registrar's ``/v1`` API, used by agents (enrolment) and the verifier."""

from __future__ import annotations

import logging
from typing import TypeVar

import requests
from pydantic import BaseModel, ValidationError

from geoattest.errors import GeoattestError, RegistrarUnreachable, error_from_code
from geoattest.wire import ActivateRequest, AgentList, AgentView, EnrolRequest, EnrolResponse

log = logging.getLogger(__name__)

Model = TypeVar("Model", bound=BaseModel)


class RegistrarClient:
    """Talks to one registrar. Refusals come back as the registrar's own error class and code."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self._base = base_url.rstrip("/")
        self._timeout = timeout
        self._http = requests.Session()

    def close(self) -> None:
        self._http.close()

    def enrol(self, body: EnrolRequest) -> EnrolResponse:
        return self._call("POST", "/v1/agents", EnrolResponse, body)

    def activate(self, agent_id: str, proof: bytes) -> AgentView:
        body = ActivateRequest(proof=proof.hex())
        return self._call("POST", f"/v1/agents/{agent_id}/activate", AgentView, body)

    def get_agent(self, agent_id: str) -> AgentView:
        return self._call("GET", f"/v1/agents/{agent_id}", AgentView)

    def list_agents(self) -> AgentList:
        return self._call("GET", "/v1/agents", AgentList)

    def delete_agent(self, agent_id: str, *, admin_token: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {admin_token}"} if admin_token else {}
        self._send("DELETE", f"/v1/agents/{agent_id}", None, headers)

    def _call(
        self, method: str, path: str, answer: type[Model], body: BaseModel | None = None
    ) -> Model:
        response = self._send(method, path, body, {})
        try:
            return answer.model_validate(response.json())
        except (ValueError, ValidationError) as e:
            raise RegistrarUnreachable(
                f"registrar at {self._base} sent an unexpected answer to {method} {path}: {e}"
            ) from e

    def _send(
        self, method: str, path: str, body: BaseModel | None, headers: dict[str, str]
    ) -> requests.Response:
        url = self._base + path
        payload = body.model_dump(mode="json") if body is not None else None
        try:
            response = self._http.request(
                method, url, json=payload, headers=headers, timeout=self._timeout
            )
        except requests.RequestException as e:
            raise RegistrarUnreachable(f"registrar at {self._base} unreachable: {e}") from e
        if response.ok:
            return response
        raise _refusal(response, method, path)


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
