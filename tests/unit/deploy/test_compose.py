"""``deploy/compose.yaml`` without a container runtime: every command is a real ``geoattest``
command with real options, every ``GEOATTEST_*`` name a real setting whose value parses, every
secret, config, volume and file it names exists, the services keep the units' hardening, and the
worker and commands match ``deploy/systemd/``, and the Compose Specification's JSON schema
accepts the file."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

import click
import jsonschema
import pytest
import yaml

from geoattest.cli import main
from geoattest.settings import Settings
from tests.paths import REPO_ROOT, vector

DEPLOY = REPO_ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
GEOATTEST_IMAGE = "geoattest:local"
EXPECTED = {
    *("redis", "postgresql", "registrar", "verifier-api", "worker", "beat", "verifier-push"),
    *("swtpm", "agent"),
}


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))  # merge keys (<<) resolved
    assert isinstance(loaded, dict)
    return loaded


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _ours() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in _services().items() if s.get("image") == GEOATTEST_IMAGE}


def _invocations(command: list[str]) -> list[list[str]]:
    """The ``geoattest …`` command lines of a service: its command, or the lines of its shell
    script that run geoattest (``exec geoattest …`` included)."""
    if command[0] == "geoattest":
        return [command[1:]]
    assert command[:2] in (["sh", "-c"], ["sh", "-ec"]), command
    found = []
    for line in command[2].replace("\\\n", " ").splitlines():  # continued lines joined
        words = shlex.split(line)
        if words[:1] == ["exec"]:
            words = words[1:]
        if words[:1] == ["geoattest"]:
            found.append(words[1:])
    return found


def _resolve(argv: list[str]) -> tuple[click.Command, list[str]]:
    """The click command ``argv`` names, and the rest of ``argv`` (its options); fails the test
    on a subcommand ``geoattest`` does not have."""
    command: click.Command = main
    rest = list(argv)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        found = command.get_command(click.Context(command), rest[0])
        assert found is not None, f"geoattest has no command {' '.join(argv)!r}"
        command, rest = found, rest[1:]
    assert not isinstance(command, click.Group), f"{' '.join(argv)!r} names a group"
    return command, rest


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_the_file_runs_the_whole_deployment() -> None:
    assert set(_services()) == EXPECTED
    assert {"registrar", "verifier-api", "worker", "beat", "verifier-push", "swtpm", "agent"} == (
        set(_ours())
    )


@pytest.mark.parametrize("name", sorted(EXPECTED - {"redis", "postgresql"}))
def test_every_command_is_a_geoattest_command_with_real_options(name: str) -> None:
    service = _ours()[name]
    invocations = _invocations(service["command"])
    if name == "swtpm":
        assert invocations == []  # swtpm_setup and swtpm only
        return
    assert invocations, name
    for argv in invocations:
        command, rest = _resolve(argv)
        known = {opt for param in command.params for opt in getattr(param, "opts", [])}
        for word in rest:
            if word.startswith("--"):
                assert word.split("=", 1)[0] in known, f"{name}: {argv}: no option {word}"


@pytest.mark.parametrize("name", sorted(EXPECTED - {"redis", "postgresql"}))
def test_every_setting_is_a_real_setting_whose_value_parses(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _environment(_ours()[name])
    for key in env:
        assert key.startswith("GEOATTEST_"), key
        assert key.removeprefix("GEOATTEST_").lower() in Settings.model_fields, key
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    Settings()  # the values parse as the service would read them (pydantic-settings)


def test_secrets_configs_volumes_and_files_it_names_exist() -> None:
    compose = _compose()
    for name, service in _services().items():
        for secret in service.get("secrets", []):
            assert secret in compose["secrets"], (name, secret)
        for config in service.get("configs", []):
            assert config["source"] in compose["configs"], (name, config)
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).is_file(), (name, source)
            else:
                assert source in compose["volumes"], (name, source)
        for needed in service.get("depends_on", {}):
            assert needed in compose["services"], (name, needed)
        for env_file in service.get("env_file", []):
            assert env_file.startswith("compose/secrets/"), env_file  # never committed
    for item in [*compose["secrets"].values(), *compose["configs"].values()]:
        assert item["file"].startswith("compose/secrets/"), item
    assert "/deploy/compose/secrets/" in (REPO_ROOT / ".gitignore").read_text().splitlines()
    build = _ours()["registrar"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
    assert (DEPLOY / "compose" / "make-secrets").stat().st_mode & 0o111


def test_our_services_keep_the_units_hardening() -> None:
    for name, service in _ours().items():
        assert service["user"] == "10001:10001", name
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
    for name in ("redis", "postgresql"):  # their own images' users; published nowhere
        assert "ports" not in _services()[name], name
    for name, service in _ours().items():
        if name == "verifier-push":  # mTLS: it checks client certificates itself, no proxy
            assert service.get("ports") == ["8894:8894"]
            continue
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)  # a TLS proxy fronts them


def test_redis_demands_a_password_and_the_verifier_reads_it_from_a_file() -> None:
    redis = _services()["redis"]
    assert redis["command"][:2] == ["redis-server", "/run/secrets/redis_conf"]
    assert "NOAUTH" in redis["healthcheck"]["test"][-1]
    for name in ("verifier-api", "worker", "beat", "verifier-push"):
        env = _environment(_ours()[name])
        secret_file = env["GEOATTEST_REDIS_PASSWORD_FILE"]
        assert secret_file == "/run/secrets/redis_password", name  # noqa: S105  # a path
        assert "@" not in env["GEOATTEST_REDIS_URL"], name  # no password in a URL here
        assert "redis_password" in _ours()[name]["secrets"], name


def _unit_commands() -> dict[str, list[str]]:
    commands = {}
    for unit in (DEPLOY / "systemd").glob("*.service"):
        match = re.search(r"^ExecStart=\S*/geoattest (.+)$", unit.read_text(), re.M)
        if match:
            commands[unit.name] = match.group(1).split()
    return commands


def test_it_runs_what_the_systemd_units_run() -> None:
    ours = {tuple(argv) for s in _ours().values() for argv in _invocations(s["command"]) if argv}
    units = _unit_commands()
    for unit, argv in units.items():
        if unit == "geoattest-keys.service":
            continue  # the key service is the relying party's, not part of this stack
        assert tuple(argv) in ours, (unit, argv)
    assert sum(s["command"][1:3] == ["verifier", "beat"] for s in _ours().values()) == 1


def _spec_errors(document: dict[str, Any]) -> list[str]:
    schema = json.loads(vector("compose/compose-spec.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    return [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(document)]


def test_the_file_follows_the_compose_specification() -> None:
    """The Compose Specification's own JSON schema (tests/vectors/compose) accepts the file,
    as ``docker compose config`` would check it (no compose implementation is installed here)."""
    assert _spec_errors(_compose()) == []


@pytest.mark.parametrize(
    ("where", "change"),
    [
        ("redis", {"restrat": "always"}),  # a misspelled option
        ("worker", {"depends_on": {"redis": {"condition": "when_ready"}}}),
        ("verifier-api", {"healthcheck": {"test": ["CMD", "true"], "intervall": "5s"}}),
        ("beat", {"cap_drop": "ALL"}),  # a list in the specification
    ],
)
def test_the_specification_check_refuses_what_compose_would(
    where: str, change: dict[str, object]
) -> None:
    document = _compose()
    document["services"][where] = {**document["services"][where], **change}
    assert _spec_errors(document)
