"""The verifier refuses a Redis that anyone can use.

Whoever can write the verifier's Redis can set an agent's hot state, hold its round lock or push
its fencing counter: Redis must be authenticated (a password or an ACL user, the URL carrying
the credentials), or reached over a Unix socket in a directory only the verifier's user can
enter. At start the verifier connects *without* the URL's credentials: if that connection is
served, Redis is open and the verifier refuses to start, unless ``redis_allow_unauthenticated``
says so explicitly (a throwaway setup; never production).

With Sentinel the same holds for the Sentinels themselves, and matters more: whoever can talk to
an open Sentinel can reconfigure it (``SENTINEL SET``, ``SENTINEL FAILOVER``, ``SENTINEL
REMOVE``/``MONITOR``) and so point every verifier process at a Redis of their own. Each Sentinel
must refuse anonymous clients (``requirepass`` in its configuration, ``sentinel-pass`` for its
peers), and so must the primary it names.
"""

from __future__ import annotations

import stat
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from geoattest.errors import ConfigurationError, DependencyUnavailable
from verifier.storage.redis_target import RedisTarget

# A probe asks once: redis-py retries a ConnectionError with backoff, and it counts a refused
# AUTH as one, so a protected server would cost three backed-off attempts (about 3 s) each.
_ASK_ONCE = Retry(NoBackoff(), 0)


def check_redis_requires_auth(
    target: RedisTarget | str, *, allow_unauthenticated: bool = False
) -> None:
    """``ConfigurationError`` when the Redis at ``target`` (or, with Sentinel, one of the
    Sentinels or the primary they name) serves clients without credentials;
    ``DependencyUnavailable`` when it cannot be reached at all."""
    if allow_unauthenticated:
        return
    if isinstance(target, str):
        target = RedisTarget(url=target)
    if target.uses_sentinel:
        _check_sentinels(target)
        return
    _check_url(target.url)


def _check_sentinels(target: RedisTarget) -> None:
    for host, port in target.sentinels:
        if _serves_anonymous(host, port, "sentinel"):
            raise ConfigurationError(
                f"Redis Sentinel at {host}:{port} accepts clients without authentication: "
                "anyone who reaches it could fail the verifier over to a Redis of their own. "
                "Set requirepass (and sentinel-pass) in every Sentinel's configuration and "
                "give the verifier redis_sentinel_password_file"
            )
    sentinel = target.sentinel(socket_timeout=3, connect_timeout=3)
    try:
        host, port = sentinel.discover_master(target.master)  # type: ignore[no-untyped-call, unused-ignore]  # redis-py < 8 leaves it unannotated
    except redis.RedisError as e:  # MasterNotFoundError included
        raise DependencyUnavailable(
            f"no Sentinel of {target.describe()} names a primary: {e}"
        ) from e
    finally:
        for client in sentinel.sentinels:
            client.close()
    if _serves_anonymous(host, int(port), "primary"):
        raise ConfigurationError(
            f"the Redis primary {host}:{port} that Sentinel names accepts clients without "
            "authentication: anyone who reaches it could set an agent's state. Set "
            "requirepass (and masterauth) on the primary and replicas, and give the verifier "
            "redis_password_file"
        )


def _serves_anonymous(host: str, port: int, what: str) -> bool:
    """Whether the server at ``host:port`` answers PING without credentials. A Sentinel that
    none answers is skipped (another may); ``DependencyUnavailable`` for a primary."""
    client = redis.Redis(
        host=host, port=port, socket_timeout=3, socket_connect_timeout=3, retry=_ASK_ONCE
    )
    try:
        client.ping()
    except redis.AuthenticationError:
        return False
    except redis.ResponseError as e:
        if "NOAUTH" in str(e) or "WRONGPASS" in str(e):
            return False
        raise
    except (redis.ConnectionError, redis.TimeoutError) as e:
        if what == "sentinel":
            return False  # down now: it cannot serve anyone; the reachable ones are checked
        raise DependencyUnavailable(f"Redis {what} at {host}:{port} is unreachable: {e}") from e
    finally:
        client.close()
    return True


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        _check_socket_directory(Path(parts.path))
        return
    host = parts.hostname or "127.0.0.1"
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    anonymous = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    client = redis.Redis.from_url(
        anonymous, socket_timeout=3, socket_connect_timeout=3, retry=_ASK_ONCE
    )
    try:
        client.ping()
    except redis.AuthenticationError:
        return  # NOAUTH: only clients with credentials are served
    except redis.ResponseError as e:
        if "NOAUTH" in str(e) or "WRONGPASS" in str(e):
            return
        raise
    except (redis.ConnectionError, redis.TimeoutError) as e:
        raise DependencyUnavailable(f"Redis at {netloc} is unreachable: {e}") from e
    finally:
        client.close()
    raise ConfigurationError(
        f"Redis at {netloc} accepts clients without authentication: anyone who reaches it could "
        "set an agent's state. Set requirepass (or an ACL user) and put the credentials in "
        "GEOATTEST_REDIS_URL (redis://:PASSWORD@host:port/0), or use a Unix socket in an "
        "owner-only directory"
    )


def _check_socket_directory(socket: Path) -> None:
    directory = socket.parent
    mode = stat.S_IMODE(directory.stat().st_mode)
    if mode & 0o077:
        raise ConfigurationError(
            f"Redis socket {socket} lies in {directory} with mode {mode:04o}: other users can "
            f"reach it; make the directory owner-only (chmod 700 {directory})"
        )
