"""The model keys the service guards: one owner-only JSON file per key in ``keys_dir``.

A key file holds the 32-byte AES key (base64) and what it is bound to: the zones a PoG token
must name (at least one) and, optionally, the executable SHA-256s a token's workload must have.
The directory is 0700, every file 0600 (checked when read); the key itself never leaves this
module except wrapped to a caller's key (``keyrelease.release``) or for ``keys seal``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from geoattest.errors import ConfigurationError, Conflict, NotFound, RequestError
from geoattest.private_files import check_private, create_private_file, ensure_private_dir
from keyrelease.sealing import KEY_BYTES

__all__ = ["KEY_ID_PATTERN", "KeyStore", "ModelKey"]

KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class KeyIdInvalid(RequestError):
    code = "key_id_invalid"


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelKey:
    key_id: str
    key: bytes
    zones: frozenset[str]
    workloads: frozenset[bytes]  # empty: any executable
    min_tier: str  # the weakest EAR tier accepted in every submodule
    created_at: dt.datetime

    def __repr__(self) -> str:  # never the key
        return f"ModelKey(key_id={self.key_id!r}, zones={sorted(self.zones)})"


def check_key_id(key_id: str) -> str:
    if KEY_ID_PATTERN.fullmatch(key_id) is None:
        raise KeyIdInvalid("a key id is 1-64 of [A-Za-z0-9._-], starting with a letter or digit")
    return key_id


class KeyStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def create(
        self,
        key_id: str,
        *,
        zones: frozenset[str],
        workloads: frozenset[bytes] = frozenset(),
        min_tier: str = "affirming",
        now: dt.datetime,
    ) -> ModelKey:
        """A new random key bound to ``zones``; ``Conflict`` if the id exists."""
        check_key_id(key_id)
        if not zones:
            raise RequestError("a model key must be bound to at least one zone")
        ensure_private_dir(self.directory)
        key = ModelKey(
            key_id=key_id,
            key=os.urandom(KEY_BYTES),
            zones=zones,
            workloads=workloads,
            min_tier=min_tier,
            created_at=now,
        )
        body = {
            "key_id": key_id,
            "key": base64.b64encode(key.key).decode(),
            "zones": sorted(zones),
            "workloads": sorted(w.hex() for w in workloads),
            "min_tier": min_tier,
            "created_at": now.isoformat(),
        }
        if not create_private_file(self._path(key_id), json.dumps(body, indent=1).encode()):
            raise Conflict(f"model key {key_id!r} exists already")
        return key

    def get(self, key_id: str) -> ModelKey:
        path = self._path(check_key_id(key_id))
        if not path.exists():
            raise NotFound(f"no model key {key_id!r}")
        check_private(path)
        try:
            body = json.loads(path.read_text())
            key = base64.b64decode(body["key"], validate=True)
            if len(key) != KEY_BYTES:
                raise ValueError("not a 256-bit key")
            return ModelKey(
                key_id=str(body["key_id"]),
                key=key,
                zones=frozenset(str(z) for z in body["zones"]),
                workloads=frozenset(bytes.fromhex(w) for w in body.get("workloads", [])),
                min_tier=str(body.get("min_tier", "affirming")),
                created_at=dt.datetime.fromisoformat(body["created_at"]),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigurationError(f"{path} is not a readable model key: {e}") from e

    def _path(self, key_id: str) -> Path:
        return self.directory / f"{key_id}.json"
