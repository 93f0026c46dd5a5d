"""``RedisTarget``: from the settings to every client's view of Redis, passwords from files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from geoattest.errors import ConfigurationError
from geoattest.private_files import create_private_file
from geoattest.settings import load_settings
from verifier.storage.redis_target import RedisTarget, redis_target


def _secret(path: Path, text: str) -> Path:
    create_private_file(path, text.encode())
    return path


def test_sentinel_settings_make_a_sentinel_target_with_both_passwords(tmp_path: Path) -> None:
    settings = load_settings(
        redis_url="redis://127.0.0.1:6379/3",
        redis_sentinels=("10.0.0.1:26379", "[fd00::2]:26380"),
        redis_sentinel_master="fleet-a",
        redis_password_file=_secret(tmp_path / "redis", "p@ss/word\n"),
        redis_sentinel_password_file=_secret(tmp_path / "sentinel", "s3nt\n"),
    )
    target = redis_target(settings)
    assert target.sentinels == (("10.0.0.1", 26379), ("fd00::2", 26380))
    assert target.master == "fleet-a"
    assert target.db == 3
    assert (target.password, target.sentinel_password) == ("p@ss/word", "s3nt")
    assert "p@ss" not in repr(target)
    assert "s3nt" not in repr(target)
    url, options = target.celery_broker()
    assert url == (
        "sentinel://:p%40ss%2Fword@10.0.0.1:26379/3;sentinel://:p%40ss%2Fword@[fd00::2]:26380/3"
    )
    assert options == {"master_name": "fleet-a", "sentinel_kwargs": {"password": "s3nt"}}
    assert target.describe() == "master 'fleet-a' of Sentinel 10.0.0.1:26379, fd00::2:26380"


def test_a_direct_url_gets_the_password_file_unless_it_carries_one(tmp_path: Path) -> None:
    password = _secret(tmp_path / "redis", "from-file")
    plain = redis_target(
        load_settings(redis_url="redis://127.0.0.1:6379/0", redis_password_file=password)
    )
    assert plain.celery_broker() == ("redis://:from-file@127.0.0.1:6379/0", {})
    assert plain.describe() == "redis://127.0.0.1:6379/0"
    own = RedisTarget(url="redis://:in-url@127.0.0.1:6379/0", password="from-file")  # noqa: S106  # a test value
    assert own.celery_broker() == ("redis://:in-url@127.0.0.1:6379/0", {})
    assert own.describe() == "redis://:***@127.0.0.1:6379/0"
    user = RedisTarget(url="redis://verifier@127.0.0.1:6379/0", password="pw")  # noqa: S106  # a test value
    assert user.celery_broker()[0] == "redis://verifier:pw@127.0.0.1:6379/0"


def test_a_password_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = _secret(tmp_path / "redis", "secret")
    os.chmod(path, 0o644)
    settings = load_settings(redis_password_file=path)
    with pytest.raises(ConfigurationError, match="owner-only"):
        redis_target(settings)


def test_an_empty_password_file_is_refused(tmp_path: Path) -> None:
    settings = load_settings(redis_password_file=_secret(tmp_path / "redis", "\n"))
    with pytest.raises(ConfigurationError, match="one non-empty line"):
        redis_target(settings)


def test_a_sentinel_password_without_sentinels_is_refused(tmp_path: Path) -> None:
    settings = load_settings(redis_sentinel_password_file=_secret(tmp_path / "s", "pw"))
    with pytest.raises(ConfigurationError, match="redis_sentinels is not"):
        redis_target(settings)


@pytest.mark.parametrize("address", ["10.0.0.1", "10.0.0.1:", ":26379", "host:99999", "h:x"])
def test_a_sentinel_address_without_host_and_port_is_refused(address: str) -> None:
    with pytest.raises(ValidationError, match="not a Sentinel address"):
        load_settings(redis_sentinels=(address,))


def test_with_sentinel_a_password_in_the_url_is_used_when_no_file_gives_one() -> None:
    target = RedisTarget(url="redis://:in-url@ignored:6379/2", sentinels=(("10.0.0.1", 26379),))
    assert target.celery_broker()[0] == "sentinel://:in-url@10.0.0.1:26379/2"
    assert target.describe() == "master 'geoattest' of Sentinel 10.0.0.1:26379"
