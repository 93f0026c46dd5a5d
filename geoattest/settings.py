"""The one typed configuration object.

Built once in ``main()``/``create_app(settings)`` and passed down; nothing reads ``os.environ``
at import time. Sources, strongest first: explicit overrides (CLI flags), ``GEOATTEST_*``
environment variables, an optional TOML file (``GEOATTEST_CONFIG`` or ``--config``), then the
defaults below.

This module is a leaf: of the project it imports only the agent id rule of ``geoattest.wire``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from geoattest.wire import AGENT_ID_RULE, is_agent_id

DEFAULT_STATE_DIR = Path("var")
MIN_WEBHOOK_SECRET_LENGTH = 32  # characters: a key, not a password


class Settings(BaseSettings):
    """Every knob of registrar, verifier and agent. Field names are the env names without prefix."""

    model_config = SettingsConfigDict(env_prefix="GEOATTEST_", frozen=True, extra="forbid")

    # --- shared -------------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "text"
    database_url: str = Field(
        default=f"sqlite:///{DEFAULT_STATE_DIR / 'geoattest.sqlite'}",
        description="SQLAlchemy URL; SQLite file by default, postgresql+psycopg://… at scale.",
    )

    # --- registrar ----------------------------------------------------------------------------
    registrar_host: str = "127.0.0.1"
    registrar_port: int = Field(default=8890, ge=1, le=65535)
    ek_ca_dir: Path | None = Field(
        default=None, description="Directory of allowlisted EK manufacturer CA certs (PEM/DER)."
    )
    ek_pins_file: Path | None = Field(
        default=None,
        description="TOML purchase-order pins; when set, a valid chain alone is not enough.",
    )
    challenge_ttl_seconds: int = Field(default=300, ge=10, le=3600)
    registrar_state_dir: Path = Field(
        default=DEFAULT_STATE_DIR / "registrar",
        description="Owner-only directory of the registrar's enrolment key (created 0700).",
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="The API key this client (CLI) presents to the registrar or verifier "
        "(gak_…, from 'geoattest api-keys create'); a short or malformed key is refused.",
    )
    registrar_signing_key: Path | None = Field(
        default=None,
        description="PEM of the registrar's public signing key, pinned: the verifier accepts "
        "identities only in records it signed ('geoattest registrar signing-key' prints it).",
    )
    registrar_api_key: SecretStr | None = Field(
        default=None,
        description="The verifier's key for the registrar (role viewer: it reads identities).",
    )

    # --- agent --------------------------------------------------------------------------------
    agent_id: str | None = None
    registrar_url: str = "http://127.0.0.1:8890"
    tcti: str = "device:/dev/tpmrm0"
    ek_algorithm: Literal["auto", "ecc", "rsa"] = "auto"
    ak_algorithm: Literal["ecc", "rsa"] = "ecc"
    ak_handle: int = Field(default=0x81010002, ge=0x81000000, le=0x81FFFFFF)
    http_timeout_seconds: float = Field(default=10.0, gt=0)
    agent_host: str = "127.0.0.1"
    agent_port: int = Field(default=9002, ge=1, le=65535)
    agent_url: str | None = Field(
        default=None, description="URL the verifier reaches this agent at (default from host/port)."
    )
    agent_state_dir: Path = Field(
        default=DEFAULT_STATE_DIR / "agent", description="Agent TLS key and certificate live here."
    )
    verifier_client_ca: Path | None = Field(
        default=None, description="CA (PEM) whose client certificates may call the agent's API."
    )
    ima_log_path: Path = Path("/sys/kernel/security/ima/ascii_runtime_measurements")
    boot_log_path: Path = Field(
        default=Path("/sys/kernel/security/tpm0/binary_bios_measurements"),
        description="TCG boot event log sent when the verifier asks (a missing file: none sent).",
    )
    gnss_source: str | None = Field(
        default=None,
        description="GNSS receiver: file:PATH[?paced], serial:URL[?baud=N] or gpsd:HOST:PORT; "
        "unset = this node gives no location evidence.",
    )
    location_key_handle: int = Field(default=0x81010003, ge=0x81000000, le=0x81FFFFFF)
    location_max_fix_age_seconds: float = Field(default=5.0, gt=0)
    location_wait_for_fix_seconds: float = Field(default=2.0, ge=0)
    verifier_url: str = Field(
        default="http://127.0.0.1:8891",
        description="The verifier's API, where the agent asks for tokens (and relying parties "
        "find the JWKS and the revocation status).",
    )
    workload_socket: Path | None = Field(
        default=DEFAULT_STATE_DIR / "agent" / "workload.sock",
        description="Unix socket of the workload API (tokens for local processes); unset: off.",
    )
    workload_socket_mode: int = Field(
        default=0o660, ge=0, le=0o777, description="Mode of the workload socket."
    )
    workload_socket_group: str | None = Field(
        default=None, description="Group (name or gid) the workload socket is given."
    )
    workload_max_executable_bytes: int = Field(
        default=512 * 1024 * 1024, gt=0, description="Larger executables are not hashed."
    )
    token_status_poll_seconds: float = Field(
        default=2.0, gt=0, description="How often the agent reads the revocation status."
    )
    verifier_push_url: str | None = Field(
        default=None,
        description="The verifier's push listener (https://host:port); set, 'agent push' posts "
        "evidence there with the agent's registered certificate (ADR 19).",
    )
    push_interval_seconds: float = Field(
        default=2.0, gt=0, description="Seconds between a push agent's rounds."
    )

    # --- verifier -----------------------------------------------------------------------------
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_password_file: Path | None = Field(
        default=None,
        description="Owner-only file holding the password of Redis (the primary and its "
        "replicas); used when redis_url carries none, and for the master Sentinel names.",
    )
    redis_sentinels: tuple[str, ...] = Field(
        default=(),
        description="HOST:PORT of each Redis Sentinel; when set, every Redis client of the "
        "verifier (API, worker, beat, tokens, dashboard) finds the primary through them and "
        "follows a failover (redis_url's host is then unused; its database number still counts).",
    )
    redis_sentinel_master: str = Field(
        default="geoattest",
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="The master name the Sentinels monitor (their 'sentinel monitor NAME').",
    )
    redis_sentinel_password_file: Path | None = Field(
        default=None,
        description="Owner-only file holding the Sentinels' own password (their requirepass); "
        "required with redis_sentinels unless redis_allow_unauthenticated.",
    )
    redis_allow_unauthenticated: bool = Field(
        default=False,
        description="Let the verifier use a Redis that serves clients without credentials "
        "(a throwaway setup only: anyone who reaches it could set an agent's state).",
    )
    verifier_host: str = "127.0.0.1"
    verifier_port: int = Field(default=8891, ge=1, le=65535)
    verifier_tls_dir: Path = Field(
        default=DEFAULT_STATE_DIR / "verifier",
        description="Verifier client CA, client key and certificate for mTLS to agents.",
    )
    policy_upload_max_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=64 * 1024,
        description="Largest policy document PUT /v1/policies accepts, counted as JSON after "
        "any gzip is undone (a whole-system runtime policy of 400,000 files is about 47 MB).",
    )
    worker_metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Port where a verifier worker serves /metrics (its pool processes summed; "
        "a viewer API key required); none: the worker serves no metrics. 0 picks a free port.",
    )
    worker_metrics_host: str = Field(
        default="127.0.0.1", description="Address a verifier worker's /metrics listens on."
    )
    worker_metrics_dir: Path | None = Field(
        default=None,
        description="Owner-only directory for the worker pool's metric files "
        "(PROMETHEUS_MULTIPROC_DIR; emptied at start); none: a fresh private temporary one.",
    )
    round_interval_seconds: float = Field(default=2.0, gt=0)
    agent_timeout_seconds: float = Field(default=5.0, gt=0)
    unreachable_backoff_max_seconds: float = Field(default=60.0, gt=0)
    zones_file: Path | None = Field(
        default=None, description="GeoJSON zones that location policies name (verifier)."
    )
    zones_repair: bool = Field(
        default=False, description="Load invalid zone geometry repaired (each repair is logged)."
    )
    webhook_urls: tuple[str, ...] = ()
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="HMAC-SHA256 key signing every webhook (at least 32 characters); required "
        "when webhook_urls is set (docs/webhooks.md).",
    )
    verifier_id: str | None = Field(
        default=None,
        description="Names this verifier in evidence records (default: the host name).",
        max_length=64,
    )
    lease_max_age_seconds: float | None = Field(
        default=None,
        gt=0,
        description="How long a passed round vouches for an agent when its policy does not say "
        "(default: 2 x round interval + agent timeout + 1 s).",
    )
    takeover_seconds: float | None = Field(
        default=None,
        gt=0,
        description="How long a round lock or a dispatch claim left by a dead worker blocks "
        "its agent before another worker (or box) takes it (default: agent timeout + 1 s; "
        "docs/adr/0020-several-verifier-boxes.md).",
    )
    record_sample_seconds: float = Field(
        default=300.0, gt=0, description="One passed round per agent kept in full this often."
    )
    record_hot_window_seconds: float = Field(
        default=3600.0, gt=0, description="Every round is kept in full this long, then folded."
    )
    record_retention_days: float = Field(
        default=400.0, gt=0, description="Evidence records and folds older than this are deleted."
    )
    verifier_processes: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Processes serving the verifier API on its port (unset: 1). On SQLite more "
        "processes contend for one writer lock and issue fewer tokens (docs/benchmarks.md).",
    )
    verifier_keys_dir: Path = Field(
        default=DEFAULT_STATE_DIR / "verifier" / "keys",
        description="Owner-only keyrings of the verifier's signing keys (tokens, log checkpoints).",
    )
    log_checkpoint_seconds: float = Field(
        default=60.0, gt=0, description="How often the transparency log signs a checkpoint."
    )
    log_origin: str | None = Field(
        default=None,
        max_length=200,
        description="Names the transparency log in its checkpoints (default: made once per "
        "database).",
    )
    token_issuer: str | None = Field(
        default=None,
        description="The tokens' iss (default http://<verifier_host>:<verifier_port>).",
        max_length=256,
    )
    token_trust_domain: str = Field(
        default="geoattest.local",
        pattern=r"^[a-z0-9._-]{1,255}$",
        description="SPIFFE trust domain of the workload URIs tokens name.",
    )
    token_workload_names: dict[str, str] = Field(
        default_factory=dict,
        description="Executable SHA-256 (hex) -> the sub a token names instead of the SPIFFE URI.",
    )
    token_ttl_seconds: float = Field(
        default=300.0, gt=0, le=86400, description="Longest token lifetime (leases cut it)."
    )
    token_session_seconds: float = Field(
        default=3600.0, gt=0, description="How long an agent's TPM-bound token session lasts."
    )
    token_fresh_wait_seconds: float = Field(
        default=5.0, ge=0, description="How long a fresh round waits for a running round."
    )
    token_status_seconds: float = Field(
        default=10.0, gt=0, description="Validity of the signed revocation status document."
    )
    # Push mode (ADR 19): agents nobody can reach post their evidence to this mTLS listener.
    push_host: str = Field(default="127.0.0.1", description="Address of the push listener.")
    push_port: int = Field(default=8894, ge=1, le=65535)
    push_processes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Processes of the push listener on its port (verifier push-serve "
        "--processes): one process's threads share a GIL (docs/benchmarks.md, Push mode).",
    )
    push_names: tuple[str, ...] = Field(
        default=(),
        description="Host names and addresses agents dial for the push listener: its "
        "certificate's SAN (default: push_host, which is no name when it is 0.0.0.0).",
    )
    push_challenge_seconds: float = Field(
        default=30.0, gt=0, le=600, description="Lifetime of a push agent's challenge."
    )
    push_challenges_per_minute: int = Field(
        default=30, ge=1, description="Challenges one push agent may ask for per minute."
    )

    # --- key service (relying party: attestation-gated release of model keys) ---------------
    keys_host: str = "127.0.0.1"
    keys_port: int = Field(default=8893, ge=1, le=65535)
    keys_dir: Path = Field(
        default=DEFAULT_STATE_DIR / "keys",
        description="Owner-only directory of the model keys the key service releases.",
    )
    keys_database_url: str = Field(
        default=f"sqlite:///{DEFAULT_STATE_DIR / 'keys' / 'releases.sqlite'}",
        description="Where the key service records every release and refusal.",
    )
    keys_audience: str = Field(
        default="geoattest-keys",
        pattern=r"^[\x21-\x7e]{1,256}$",
        description="The audience tokens for the key service must name.",
    )
    keys_url: str = Field(
        default="http://127.0.0.1:8893", description="Where workloads reach the key service."
    )
    keys_log_api_key: SecretStr | None = Field(
        default=None,
        description="The key service's API key for the verifier (role admin): every release "
        "and refusal is sent to the transparency log at verifier_url; unset: kept only in the "
        "key service's own ledger (a warning at start).",
    )

    @field_validator("api_key", "registrar_api_key", "keys_log_api_key")
    @classmethod
    def _whole_api_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _is_api_key(value.get_secret_value()):
            raise ValueError(
                "not an API key (gak_<16 hex>_<43 base64url>: 32 random bytes; create one with "
                "'geoattest api-keys create'); an empty or short key is refused"
            )
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _strong_webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_WEBHOOK_SECRET_LENGTH:
            raise ValueError(
                f"webhook_secret must be at least {MIN_WEBHOOK_SECRET_LENGTH} characters "
                "(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value

    @model_validator(mode="after")
    def _webhooks_are_signed(self) -> Self:
        if self.webhook_urls and self.webhook_secret is None:
            raise ValueError(
                "webhook_urls is set but webhook_secret is not: webhooks are always signed, so "
                "that receivers can tell them from forgeries (docs/webhooks.md)"
            )
        return self

    @field_validator("registrar_url", "verifier_url", "keys_url", "agent_url", "verifier_push_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return value if value is None else _checked_url(value, ("http", "https"))

    @field_validator("webhook_urls")
    @classmethod
    def _webhook_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_checked_url(url, ("http", "https")) for url in value)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        return _checked_url(value, ("redis", "rediss", "unix"))

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinel_addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(
                    f"{address!r} is not a Sentinel address: HOST:PORT (e.g. 10.0.0.5:26379)"
                )
        return value

    @field_validator("database_url", "keys_database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        # Imported here: only processes that set a database URL pay for SQLAlchemy.
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            make_url(value).get_dialect()
        except (ArgumentError, NoSuchModuleError, ValueError) as e:
            raise ValueError(
                f"{value!r} is not a database URL SQLAlchemy can use ({e}); e.g. "
                "sqlite:///var/geoattest.sqlite or postgresql+psycopg://USER@HOST/DB"
            ) from e
        return value

    @field_validator("agent_id")
    @classmethod
    def _agent_id_shape(cls, value: str | None) -> str | None:
        if value is not None and not is_agent_id(value):
            raise ValueError(f"agent_id must be {AGENT_ID_RULE}")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Flags beat environment, environment beats the TOML file (no file unless one is given).
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def _checked_url(value: str, schemes: tuple[str, ...]) -> str:
    """``value`` when it is a URL of one of ``schemes`` with a host (or a unix socket path)."""
    parts = urlsplit(value)
    if parts.scheme not in schemes or not (parts.netloc or parts.scheme == "unix"):
        raise ValueError(
            f"{value!r} is not a URL with a scheme and a host: "
            f"{' or '.join(s + '://…' for s in schemes)}"
            f" (e.g. {schemes[0]}://127.0.0.1:PORT)"
        )
    return value


def _is_api_key(text: str) -> bool:
    """The shape of ``geoattest.access.keys`` (kept here: settings is a leaf module)."""
    return re.fullmatch(r"gak_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", text.strip()) is not None


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:  # noqa: ANN401
    """Build the settings; ``None`` overrides are dropped so unset CLI flags fall through."""
    given = {key: value for key, value in overrides.items() if value is not None}
    if config_file is None:
        return Settings(**given)
    if not config_file.is_file():
        raise FileNotFoundError(f"config file not found: {config_file}")

    class FileSettings(Settings):
        model_config = SettingsConfigDict(**{**Settings.model_config, "toml_file": config_file})

    return FileSettings(**given)
