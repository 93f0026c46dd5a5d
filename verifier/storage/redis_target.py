"""Where the verifier's Redis is: one URL, or the primary that Redis Sentinel names.

Every Redis client of the verifier (API, worker and beat, the token service, the dashboard's
event stream, readiness) is made here, from one ``RedisTarget`` built from the settings, so that
with Sentinel all of them follow a failover the same way: redis-py's ``Sentinel.master_for``
asks the Sentinels for the primary at each (re)connection, and a connection to a primary that
was demoted fails (``READONLY``) and is made again to the new one. Celery's broker is kombu's
``sentinel://`` transport over the same Sentinels and master name.

Passwords come from the URL or from owner-only files (``redis_password_file`` for the primary
and its replicas, ``redis_sentinel_password_file`` for the Sentinels themselves); they are never
part of ``describe()`` or a ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import redis
from redis.sentinel import Sentinel

from geoattest.errors import ConfigurationError
from geoattest.private_files import check_private
from geoattest.settings import Settings

__all__ = ["RedisTarget", "read_secret_file", "redis_target"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisTarget:
    """A direct ``url``, or ``sentinels`` (host, port) watching ``master``."""

    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = "geoattest"
    password: str | None = field(default=None, repr=False)  # of the primary and replicas
    sentinel_password: str | None = field(default=None, repr=False)

    @property
    def uses_sentinel(self) -> bool:
        return bool(self.sentinels)

    @property
    def db(self) -> int:
        path = urlsplit(self.url).path.strip("/")
        return int(path) if path.isdigit() else 0

    def describe(self) -> str:
        """Where Redis is, for messages and logs (no password)."""
        if self.uses_sentinel:
            where = ", ".join(f"{host}:{port}" for host, port in self.sentinels)
            return f"master {self.master!r} of Sentinel {where}"
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()

    def sentinel(self, *, socket_timeout: float, connect_timeout: float) -> Sentinel:
        """A Sentinel client (asks the Sentinels; its ``master_for`` makes clients)."""
        return Sentinel(  # type: ignore[no-untyped-call, unused-ignore]  # redis-py < 8 leaves Sentinel unannotated
            list(self.sentinels),
            sentinel_kwargs={
                "socket_timeout": socket_timeout,
                "socket_connect_timeout": connect_timeout,
                "password": self.sentinel_password,
            },
            password=self.password or urlsplit(self.url).password,  # the file, else the URL's
            username=urlsplit(self.url).username,
            db=self.db,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
        )

    def client(
        self,
        *,
        socket_timeout: float,
        connect_timeout: float,
        health_check_interval: int = 0,
    ) -> redis.Redis:
        """A client of the primary: of ``url``, or the one the Sentinels name now and after
        every failover."""
        if self.uses_sentinel:
            sentinel = self.sentinel(socket_timeout=socket_timeout, connect_timeout=connect_timeout)
            client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call, unused-ignore]  # redis-py < 8 leaves it unannotated
                self.master, health_check_interval=health_check_interval
            )
            return client
        return redis.Redis.from_url(
            self.url,
            password=self.password,  # the URL's own password, when it has one, wins
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            health_check_interval=health_check_interval,
        )

    def celery_broker(self) -> tuple[str, dict[str, object]]:
        """Celery's broker URL and the transport options it needs (master name, Sentinel
        password). With Sentinel: ``sentinel://:PASSWORD@HOST:PORT/DB;sentinel://…``."""
        if not self.uses_sentinel:
            return _with_password(self.url, self.password), {}
        password = self.password or urlsplit(self.url).password
        secret = f":{quote(password, safe='')}@" if password else ""
        url = ";".join(
            f"sentinel://{secret}{_netloc(host, port)}/{self.db}" for host, port in self.sentinels
        )
        options: dict[str, object] = {"master_name": self.master}
        if self.sentinel_password is not None:
            options["sentinel_kwargs"] = {"password": self.sentinel_password}
        return url, options


def redis_target(settings: Settings) -> RedisTarget:
    """The settings' Redis, its passwords read from their files (``ConfigurationError`` when a
    file is not owner-only, unreadable or empty)."""
    password = read_secret_file(settings.redis_password_file)
    sentinel_password = read_secret_file(settings.redis_sentinel_password_file)
    if sentinel_password is not None and not settings.redis_sentinels:
        raise ConfigurationError("redis_sentinel_password_file is set but redis_sentinels is not")
    return RedisTarget(
        url=settings.redis_url,
        sentinels=tuple(_address(a) for a in settings.redis_sentinels),
        master=settings.redis_sentinel_master,
        password=password,
        sentinel_password=sentinel_password,
    )


def read_secret_file(path: Path | None) -> str | None:
    """The first line of an owner-only secret file (``None`` for no file)."""
    if path is None:
        return None
    check_private(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigurationError(f"cannot read the secret file {path}: {e}") from e
    secret = text.strip()
    if not secret or "\n" in secret:
        raise ConfigurationError(f"{path} must hold one non-empty line (the password)")
    return secret


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _with_password(url: str, password: str | None) -> str:
    """``url`` with ``password`` put in, unless it carries one already (or is a socket path)."""
    parts = urlsplit(url)
    if password is None or parts.password is not None or parts.scheme == "unix":
        return url
    user, _, place = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{user}:{quote(password, safe='')}@{place}").geturl()
