"""Each boot's measured executables in Redis: adds within a boot, replaced by a new boot, a late
write of another boot ignored, a lookup for another boot finds nothing."""

from __future__ import annotations

import hashlib

import pytest
import redis

from verifier.core.measured import MeasuredFile
from verifier.storage.runtime_digests import RuntimeDigests

pytestmark = [pytest.mark.redis]


def _file(name: str) -> MeasuredFile:
    return MeasuredFile(sha256=hashlib.sha256(name.encode()).digest(), path=f"/usr/bin/{name}")


def test_a_boot_set_grows_is_replaced_and_never_mixes_boots(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    digests = RuntimeDigests(client)
    bash, sshd, old = _file("bash"), _file("sshd"), _file("from-the-old-boot")
    assert digests.record("a", 1, [bash], replace=True)
    assert digests.record("a", 1, [sshd], replace=False)
    assert digests.lookup("a", 1, bash.sha256) == bash
    assert digests.lookup("a", 1, sshd.sha256) == sshd
    assert digests.lookup("a", 2, bash.sha256) is None  # another boot asks: nothing
    assert digests.record("a", 2, [sshd], replace=True)  # boot 2 starts over
    assert digests.lookup("a", 2, bash.sha256) is None
    assert not digests.record("a", 1, [old], replace=False)  # a late write of boot 1
    assert digests.lookup("a", 2, old.sha256) is None
    assert digests.lookup("a", 1, old.sha256) is None
    assert digests.lookup("b", 1, bash.sha256) is None  # per agent
    client.close()


def test_the_first_path_is_kept(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    digests = RuntimeDigests(client)
    first = _file("tool")
    digests.record("a", 1, [first], replace=True)
    digests.record(
        "a", 1, [MeasuredFile(sha256=first.sha256, path="/opt/elsewhere")], replace=False
    )
    found = digests.lookup("a", 1, first.sha256)
    assert found is not None
    assert found.path == "/usr/bin/tool"
    client.close()
