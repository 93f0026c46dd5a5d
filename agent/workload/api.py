"""The workload API's requests and answers: ``POST /v1/token``, ``GET /v1/healthz``.

Every request must carry ``Geoattest-Workload: true`` (``400 workload_header_missing``
otherwise), as SPIFFE's workload API requires its metadata header: a request forged through a
local proxy or a confused HTTP client does not carry it. The caller is whoever the kernel says
connected, identified when the connection was accepted (``agent.workload.peer``) and checked
again before each answer; a body claiming a hash, pid or path is not read. Answers are
``WorkloadTokenView``; errors ``{"error": {"code", "message"}}`` with the error's status.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from agent.workload.peer import Caller, ExecutableHasher
from agent.workload.tokens import WorkloadTokens
from geoattest.errors import (
    GeoattestError,
    MalformedRequest,
    NotFound,
    WorkloadHeaderMissing,
    WorkloadUnidentified,
)
from geoattest.wire_tokens import WORKLOAD_HEADER, WorkloadTokenRequest

__all__ = ["Answer", "WorkloadApi"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes


class WorkloadApi:
    def __init__(self, tokens: WorkloadTokens, hasher: ExecutableHasher) -> None:
        self.tokens = tokens
        self.hasher = hasher

    def answer(
        self,
        caller: Caller | GeoattestError,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> Answer:
        """The answer to one request; never raises (a bug is a logged 500)."""
        try:
            return Answer(200, self._route(caller, method, path, headers, body))
        except GeoattestError as e:
            log.warning(
                "workload request refused: %s", e.message, extra={"code": e.code, "path": path}
            )
            return Answer(e.http_status, json.dumps(e.to_dict()).encode())
        except Exception:  # the outermost boundary of a workload request
            log.exception("workload request %s %s failed", method, path)
            error = {"error": {"code": "internal_error", "message": "see the agent's log"}}
            return Answer(500, json.dumps(error).encode())

    def _route(
        self,
        caller: Caller | GeoattestError,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> bytes:
        if headers.get(WORKLOAD_HEADER.lower(), "").strip().lower() != "true":
            raise WorkloadHeaderMissing(
                f"workload API requests need the header {WORKLOAD_HEADER}: true"
            )
        if (method, path) == ("GET", "/v1/healthz"):
            return b'{"status":"ok"}'
        if (method, path) != ("POST", "/v1/token"):
            raise NotFound(f"no route {method} {path[:100]} (POST /v1/token, GET /v1/healthz)")
        if isinstance(caller, GeoattestError):
            raise caller
        if not isinstance(caller, Caller):  # pragma: no cover - the server always sets one
            raise WorkloadUnidentified("the request did not come through the workload socket")
        try:
            request = WorkloadTokenRequest.model_validate_json(body)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            raise MalformedRequest(f"{where}: {first['msg']}") from e
        caller.check_unchanged()
        view = self.tokens.get(caller, request)
        caller.check_unchanged()  # exited or exec'd meanwhile: it gets nothing
        return view.model_dump_json().encode()
