"""Per agent and boot, the files this boot's verified IMA log measured (Redis), for tokens.

One hash per agent, ``geoattest:runtime:<agent>``: the field ``boot`` holds the TPM resetCount
of the boot it describes, and each other field is a file's 32-byte SHA-256 with the path IMA
measured it under (the first seen). A passed round adds the files of the IMA lines it consumed;
a passed round whose replay started at entry 0 (a new boot, a re-admitted agent, a policy with
other banks, Redis having lost the round memory) replaces the whole set. Writes for another
boot than the stored one are ignored unless they replace it, so a late write of an older round
never mixes boots.

Why Redis, next to the round memory: the set changes exactly when the memory's IMA offset
moves, and is rebuilt from the same place the memory is: when Redis loses both, the next round
replays the log from entry 0 and that round replaces the set. The records cannot rebuild it
(passed rounds fold after the hot window and their IMA lines go with them). A set that is
missing or short only lowers tokens' workload tier (``measured_by: agent``), never raises it.
Cost: about 120 bytes per distinct measured file per agent (docs/adr/0009).
"""

from __future__ import annotations

from collections.abc import Sequence

import redis
from redis.client import Pipeline

from verifier.core.measured import MeasuredFile

__all__ = ["RuntimeDigests"]

MAX_PATH_BYTES = 512
_BOOT = b"boot"


def _key(agent_id: str) -> str:
    return f"geoattest:runtime:{agent_id}"


_RECORD_LUA = """
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'boot', ARGV[1])
elseif redis.call('HGET', KEYS[1], 'boot') ~= ARGV[1] then
  return 0
end
for i = 3, #ARGV, 2 do redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""


class RuntimeDigests:
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._record = client.register_script(_RECORD_LUA)

    def record(
        self, agent_id: str, boot: int, files: Sequence[MeasuredFile], *, replace: bool
    ) -> bool:
        """Add ``files`` to the set of boot ``boot`` (or ``replace`` the set with them); False
        when the stored set belongs to another boot and nothing was written."""
        args: list[bytes | str] = [str(boot), "1" if replace else ""]
        for item in files:
            args += [item.sha256, item.path.encode("utf-8", "surrogateescape")[:MAX_PATH_BYTES]]
        return bool(self._record(keys=[_key(agent_id)], args=args))

    def lookup(self, agent_id: str, boot: int, sha256: bytes) -> MeasuredFile | None:
        """The measured file with this SHA-256, if the stored set is of boot ``boot``."""
        return self.found(self._redis.hmget(_key(agent_id), [_BOOT, sha256]), boot, sha256)

    @staticmethod
    def queue_lookup(pipe: Pipeline, agent_id: str, sha256: bytes) -> None:
        """``lookup`` as a command of ``pipe``; give its result to ``found``."""
        pipe.hmget(_key(agent_id), [_BOOT, sha256])

    @staticmethod
    def found(answer: object, boot: int, sha256: bytes) -> MeasuredFile | None:
        if not isinstance(answer, list) or len(answer) != 2:
            return None
        stored_boot, path = answer
        if stored_boot is None or int(stored_boot) != boot or path is None:
            return None
        raw = path if isinstance(path, bytes) else str(path).encode("utf-8", "surrogateescape")
        return MeasuredFile(sha256=sha256, path=raw.decode("utf-8", "surrogateescape"))

    def forget(self, agent_id: str) -> None:
        self._redis.delete(_key(agent_id))
