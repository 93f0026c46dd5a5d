"""Types every wire message shares: agent ids, base64 blobs, and the base models of peer
messages and operator input."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic.functional_validators import BeforeValidator

# An agent id goes into URLs, file names, log lines and Redis keys: ASCII letters, digits, ``.``,
# ``_`` and ``-``, at most 64, starting with a letter or digit (so never ``.``, ``..`` or ``-x``).
AGENT_ID_MAX_LENGTH = 64
_AGENT_ID_BODY = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
AGENT_ID_PATTERN = rf"^{_AGENT_ID_BODY}$"
AGENT_ID_RULE = "1-64 of [A-Za-z0-9._-], starting with a letter or digit"  # for messages
MAX_BLOB_BYTES = 16 * 1024
MAX_BOOT_LOG_BYTES = 4 * 1024 * 1024  # a TCG event log; real ones are 20-200 KiB
MAX_IMA_LINE_BYTES = 512 * 1024  # one measurement: a name (PATH_MAX) and an ima-buf buffer in hex


def _b64_to_bytes(value: object, limit: int = MAX_BLOB_BYTES) -> bytes:
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a base64 string")
    if len(value) > limit * 4 // 3 + 4:
        raise ValueError(f"base64 value longer than {limit} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as e:
        raise ValueError(f"not valid base64: {e}") from e


def _b64_boot_log(value: object) -> bytes:
    return _b64_to_bytes(value, MAX_BOOT_LOG_BYTES)


def _b64_ima_line(value: object) -> bytes:
    return _b64_to_bytes(value, MAX_IMA_LINE_BYTES)


def _bytes_to_b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


B64Bytes = Annotated[
    bytes,
    BeforeValidator(_b64_to_bytes),
    PlainSerializer(_bytes_to_b64, return_type=str),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]
B64BootLog = Annotated[  # B64Bytes with room for a whole boot event log
    bytes,
    BeforeValidator(_b64_boot_log),
    PlainSerializer(_bytes_to_b64, return_type=str),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]
B64ImaLine = Annotated[  # B64Bytes with room for one IMA measurement line
    bytes,
    BeforeValidator(_b64_ima_line),
    PlainSerializer(_bytes_to_b64, return_type=str),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]
AgentId = Annotated[str, Field(pattern=AGENT_ID_PATTERN)]
AGENT_ID_SCHEMA = {"type": "string", "pattern": AGENT_ID_PATTERN, "maxLength": AGENT_ID_MAX_LENGTH}


def is_agent_id(value: str) -> bool:
    """True when ``value`` matches ``AGENT_ID_PATTERN`` exactly (no trailing newline slips by)."""
    return re.fullmatch(_AGENT_ID_BODY, value) is not None


class _Wire(BaseModel):
    """A message between peers (agent, registrar, verifier) that may run other versions.

    Unknown fields are accepted and ignored, and senders omit fields at their default
    (``model_dump_json(exclude_defaults=True)``), so a new optional field never breaks the other
    side. A field that changes meaning gets a new name, never a new meaning.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")


class _OperatorInput(BaseModel):
    """What an operator asks of a service: strict, because ignoring a field an operator meant
    (a policy setting the verifier does not know) would silently weaken what they asked for."""

    model_config = ConfigDict(frozen=True, extra="forbid")
