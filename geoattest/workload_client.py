"""The workload side of the agent's workload API: HTTP over the agent's Unix socket.

Used by ``geoattest token get`` and ``geoattest keys fetch|open`` (which run *as* the workload:
the token names the executable of the process calling). Every request carries the fixed header.
"""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path

from geoattest.errors import GeoattestError, ReachabilityError, error_from_code
from geoattest.wire_tokens import WORKLOAD_HEADER, WorkloadTokenRequest, WorkloadTokenView

__all__ = ["AgentUnavailable", "request_token"]

MAX_ANSWER_BYTES = 256 * 1024


class AgentUnavailable(ReachabilityError):
    """The agent's workload socket cannot be reached."""

    code = "workload_socket_unavailable"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self._path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


def request_token(
    socket_path: Path, request: WorkloadTokenRequest, *, timeout: float = 30.0
) -> WorkloadTokenView:
    """Ask the agent for a token for this process; raises the agent's refusal as our error."""
    connection = _UnixConnection(socket_path, timeout)
    body = request.model_dump_json(exclude_none=True).encode()
    headers = {"Content-Type": "application/json", WORKLOAD_HEADER: "true"}
    try:
        connection.request("POST", "/v1/token", body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read(MAX_ANSWER_BYTES)
    except OSError as e:
        raise AgentUnavailable(f"agent workload socket {socket_path}: {e}") from e
    finally:
        connection.close()
    if response.status != 200:
        raise _refusal(response.status, answer)
    return WorkloadTokenView.model_validate_json(answer)


def _refusal(status: int, answer: bytes) -> GeoattestError:
    try:
        error = json.loads(answer)["error"]
        return error_from_code(str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        return AgentUnavailable(f"agent answered {status} without an error body")
