"""The verifier refuses a Redis that anyone can use.

Whoever can write the verifier's Redis can set an agent's hot state, hold its round lock or push
its fencing counter: Redis must be authenticated (a password or an ACL user, the URL carrying
the credentials), or reached over a Unix socket in a directory only the verifier's user can
enter. At start the verifier connects *without* the URL's credentials: if that connection is
served, Redis is open and the verifier refuses to start, unless ``redis_allow_unauthenticated``
says so explicitly (a throwaway setup; never production).
"""

from __future__ import annotations

import stat
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis

from geoattest.errors import ConfigurationError, DependencyUnavailable


def check_redis_requires_auth(url: str, *, allow_unauthenticated: bool = False) -> None:
    """``ConfigurationError`` when the Redis at ``url`` serves clients without credentials;
    ``DependencyUnavailable`` when it cannot be reached at all."""
    if allow_unauthenticated:
        return
    parts = urlsplit(url)
    if parts.scheme == "unix":
        _check_socket_directory(Path(parts.path))
        return
    host = parts.hostname or "127.0.0.1"
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    anonymous = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    client = redis.Redis.from_url(anonymous, socket_timeout=3, socket_connect_timeout=3)
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
