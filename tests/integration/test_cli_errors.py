"""A new user never meets a traceback: each bad input a person is likely to give, run through
the real ``geoattest`` command, exits with the status of the one table (ADR 0011) and says
what is wrong in one line.

The commands are run in-process with click's runner (what ``geoattest`` runs, from the root
group down) except the servers, which run as their own processes with a deadline: a server that
did not refuse would otherwise serve for ever.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from geoattest.access.keys import Role
from geoattest.cli import EXIT_TABLE, main
from geoattest.dev.swtpm import SwtpmCa
from tests.paths import vector
from tests.support.access import issue_api_key
from tests.support.registrar_server import RunningRegistrar, running_registrar, trust_dir_with
from tests.support.served_app import served
from tests.support.verifier_stack import settings_environment, verifier_settings
from verifier.app import close_app, create_app

NE_ZONES = str(vector("zones/ne_110m_admin_0_countries.geojson"))  # Sudan needs --repair
BAD_DB = "notaurl"
NO_SCHEME = "localhost:8890"
MISSING = "/nonexistent-dir/sub/out.file"


@dataclass(frozen=True, slots=True)
class Case:
    args: tuple[str, ...]
    exit_code: int
    says: str  # what the one error line must contain


def _cases() -> Iterator[tuple[str, Case]]:
    db_commands = [
        ("api-keys", "list"),
        ("api-keys", "create", "--role", "viewer", "--name", "ops"),
        ("api-keys", "revoke", "ops"),
        ("log", "checkpoint"),
        ("log", "keys", "show"),
        ("audit", "verify"),
        ("export", "--agent", "a1", "--at", "2026-12-01T00:00Z", "-o", "out.zip"),
        ("keys", "serve"),
        ("registrar", "serve"),
        ("verifier", "serve"),
        ("verifier", "worker"),
    ]
    for command in db_commands:
        yield (
            f"database URL that does not parse: {' '.join(command[:2])}",
            Case((*command, "--db", BAD_DB), 1, f"database_url: {BAD_DB!r} is not a database URL"),
        )
    yield (
        "database URL of no dialect",
        Case(("api-keys", "list", "--db", "mysqlx://h/db"), 1, "Can't load plugin"),
    )
    outputs = [
        ("export", "--agent", "a1", "-o", MISSING),
        ("report", "{file}", "-o", MISSING, "--ek-ca", "{dir}", "--verifier-key", "{file}"),
        ("keys", "fetch", "--key-id", "k1", "-o", MISSING),
        ("keys", "open", "{file}", "-o", MISSING),
        ("keys", "seal", "{file}", "-o", MISSING, "--key-id", "k1"),
        ("policy", "ima", "generate", "{dir}", "-o", MISSING),
        ("policy", "ima", "import", "{file}", "-o", MISSING),
    ]
    for command in outputs:
        yield (
            f"output in a missing directory: {' '.join(command[:2])}",
            Case(command, 1, "directory /nonexistent-dir/sub does not exist"),
        )
    urls = [
        ("agent", "enrol", "--registrar"),
        ("agents", "list", "--registrar"),
        ("agents", "show", "a1", "--registrar"),
        ("agents", "delete", "a1", "--registrar"),
        ("export", "--agent", "a1", "--at", "2026-12-01T00:00Z", "-o", "o.zip", "--registrar"),
        ("verifier", "serve", "--registrar"),
        ("verifier", "agents", "list", "--verifier"),
        ("verifier", "agents", "show", "a1", "--verifier"),
        ("verifier", "agents", "add", "a1", "--policy", "p", "--verifier"),
        ("verifier", "agents", "remove", "a1", "--verifier"),
        ("verifier", "agents", "pause", "a1", "--verifier"),
        ("verifier", "policies", "list", "--verifier"),
        ("verifier", "policies", "show", "p", "--verifier"),
        ("verifier", "policies", "push", "p", "{file}", "--verifier"),
        ("verifier", "policies", "delete", "p", "--verifier"),
        ("verifier", "events", "--verifier"),
        ("agent", "serve", "--verifier"),
        ("keys", "serve", "--verifier"),
        ("keys", "fetch", "--key-id", "k1", "-o", "k.bin", "--service"),
        ("verifier", "worker", "--redis"),
        ("verifier", "beat", "--redis"),
    ]
    for command in urls:
        yield (
            f"URL without a scheme: {' '.join(command[:3])} {command[-1]}",
            Case((*command, NO_SCHEME), 1, f"{NO_SCHEME!r} is not a URL with a scheme"),
        )
    yield (
        "zones file that needs --repair",
        Case(("zones", "check", NE_ZONES, "--lat", "1", "--lon", "2"), 3, "again with --repair"),
    )
    yield (
        "dev measure with no running fleet",
        Case(("dev", "measure", "--state-dir", "{dir}/qs", "a1", "/bin/ls"), 1, "no running fleet"),
    )
    yield (
        "settings file that is missing",
        Case(("--config", "{dir}/none.toml", "agents", "list"), 1, "config file not found"),
    )
    yield ("unknown option", Case(("agents", "list", "--nope"), 1, "No such option '--nope'"))
    yield ("usage error of a verification", Case(("verify-bundle",), 1, "Missing argument"))


CASES = dict(_cases())


def _fill(args: Sequence[str], tmp_path: Path) -> list[str]:
    a_file = tmp_path / "some.file"
    a_file.write_text("{}")
    (tmp_path / "dir").mkdir(exist_ok=True)
    return [a.format(file=a_file, dir=tmp_path / "dir") for a in args]


def _assert_one_line(output: str, says: str) -> None:
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if says in line]
    assert len(lines) == 1, output
    assert lines[0].lower().startswith("error"), output


def _quiet_env(extra: Mapping[str, str | None] | None = None) -> dict[str, str | None]:
    """No ``GEOATTEST_*`` of the caller (None unsets it in click's runner), plus ``extra``."""
    env: dict[str, str | None] = {key: None for key in os.environ if key.startswith("GEOATTEST_")}
    return {**env, **(extra or {})}


def _server_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GEOATTEST_")}
    return {**env, **(extra or {})}


@pytest.mark.parametrize("name", list(CASES))
def test_a_bad_input_is_one_line_and_the_tables_status(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = CASES[name]
    monkeypatch.chdir(tmp_path)  # defaults under ./var land in the test's directory
    for key in [key for key in os.environ if key.startswith("GEOATTEST_")]:
        monkeypatch.delenv(key)
    result = CliRunner().invoke(main, _fill(case.args, tmp_path))
    assert result.exit_code == case.exit_code, (name, result.output)
    _assert_one_line(result.output, case.says)


def test_the_table_is_in_the_help_and_the_readme() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert "Exit status (the same for every command)" in result.output
    for code in range(6):
        assert f"\n    {code}  " in result.output, result.output
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert "| 4 | — | verified, with findings" in readme
    assert "internal error: a bug" in EXIT_TABLE


# --- inputs that need something running -------------------------------------------------------


def _run_server(
    args: Sequence[str], env: Mapping[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # our own CLI
        [sys.executable, "-m", "geoattest", *args],
        env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


@pytest.fixture
def plain_registrar(tmp_path: Path, test_ca: SwtpmCa) -> Iterator[RunningRegistrar]:
    trust = trust_dir_with(tmp_path / "ek-ca", test_ca.trust_store)
    with running_registrar(tmp_path, trust) as running:
        yield running


@dataclass(frozen=True, slots=True)
class VerifierApi:
    url: str
    env: dict[str, str]  # GEOATTEST_* that rebuild its settings
    admin_key: str


@pytest.fixture
def verifier_api(
    tmp_path: Path, redis_url: str, plain_registrar: RunningRegistrar
) -> Iterator[VerifierApi]:
    """The verifier's real API (no worker: nothing here needs rounds) on a loopback port."""
    settings = verifier_settings(tmp_path / "verifier", redis_url, plain_registrar)
    app = create_app(settings)
    try:
        with served(app, "verifier-api") as url:
            yield VerifierApi(
                url,
                settings_environment(settings),
                issue_api_key(settings.database_url, Role.ADMIN, "tests-admin"),
            )
    finally:
        close_app(app)


def test_a_port_in_use_is_named(taken_port: int, verifier_api: VerifierApi, tmp_path: Path) -> None:
    port = str(taken_port)
    servers = {
        "registrar": (
            ["registrar", "serve", "--port", port, "--ek-ca", str(tmp_path / "ek-ca"),
             "--db", f"sqlite:///{tmp_path / 'r2.sqlite'}", "--state-dir", str(tmp_path / "rs")],
            _server_env(),
        ),
        "verifier API": (["verifier", "serve", "--port", port], verifier_api.env),
        "key service": (
            ["keys", "serve", "--port", port, "--keys-dir", str(tmp_path / "keys"),
             "--db", f"sqlite:///{tmp_path / 'releases.sqlite'}"],
            _server_env(),
        ),
    }  # fmt: skip
    for name, (args, env) in servers.items():
        done = _run_server(args, env, tmp_path)
        assert done.returncode == 1, (name, done.stderr)
        _assert_one_line(done.stderr, f"cannot listen on 127.0.0.1:{port}")
        assert "error: port_in_use:" in done.stderr, done.stderr


def test_an_https_url_to_a_plain_http_server_says_so(
    plain_registrar: RunningRegistrar, verifier_api: VerifierApi, tmp_path: Path
) -> None:
    registrar = plain_registrar.url.replace("http://", "https://")
    verifier = verifier_api.url.replace("http://", "https://")
    runner = CliRunner(env=_quiet_env())
    for args in (
        ["agents", "list", "--registrar", registrar],
        ["agents", "show", "a1", "--registrar", registrar],
        ["verifier", "agents", "list", "--verifier", verifier],
        ["verifier", "policies", "list", "--verifier", verifier],
    ):
        result = runner.invoke(main, args)
        assert result.exit_code == 3, (args, result.output)
        _assert_one_line(result.output, "does not speak TLS")


def test_one_services_url_given_for_another_is_named_in_one_line(
    plain_registrar: RunningRegistrar, verifier_api: VerifierApi, tmp_path: Path
) -> None:
    verifier_key = {"GEOATTEST_API_KEY": verifier_api.admin_key}
    registrar_key = {"GEOATTEST_API_KEY": plain_registrar.api_key}
    cases = [
        (["agents", "list", "--registrar", verifier_api.url], verifier_key, "the verifier, not"),
        (["agents", "list", "--registrar", verifier_api.url], {}, "the verifier, not"),
        (["agents", "show", "a1", "--registrar", verifier_api.url], verifier_key, "the verifier"),
        (["verifier", "agents", "list", "--verifier", plain_registrar.url], registrar_key,
         "the registrar, not the verifier"),
        (["verifier", "policies", "list", "--verifier", plain_registrar.url], {}, "the registrar"),
    ]  # fmt: skip
    for args, env, says in cases:
        result = CliRunner(env=_quiet_env(env)).invoke(main, args)
        assert result.exit_code == 3, (args, result.output)
        _assert_one_line(result.output, says)
        assert "validation error" not in result.output, result.output


def test_a_verifier_whose_zones_need_repair_says_which_setting(
    taken_port: int, redis_url: str, plain_registrar: RunningRegistrar, tmp_path: Path
) -> None:
    settings = verifier_settings(tmp_path / "verifier", redis_url, plain_registrar)
    env = {**_server_env(settings_environment(settings)), "GEOATTEST_ZONES_FILE": NE_ZONES}
    done = _run_server(["verifier", "serve", "--port", str(taken_port)], env, tmp_path)
    assert done.returncode == 1, done.stderr
    _assert_one_line(done.stderr, "GEOATTEST_ZONES_REPAIR=1")
