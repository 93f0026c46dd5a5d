"""The registrar's state at rest: nothing in its database opens a challenge, and its files are
owner-only (created so, and refused at start-up when wider). Real swtpm, HTTP and SQLite."""

from __future__ import annotations

import base64
import hmac
import sqlite3
import stat
from pathlib import Path

import pytest

from agent.tpm_device import TpmDevice
from geoattest.dev.swtpm import SwtpmInstance
from geoattest.errors import ConfigurationError
from geoattest.registrar_client import RegistrarClient
from geoattest.settings import load_settings
from geoattest.wire import EnrolRequest, activation_proof, enrolment_body, enrolment_digest
from registrar.app import create_app
from registrar.proof_check import KEY_FILE
from tests.support.registrar_server import RunningRegistrar, running_registrar

STATE_DIR = "registrar-state"  # what tests.support.registrar_server gives the registrar


def _request(device: TpmDevice, agent_id: str) -> EnrolRequest:
    return EnrolRequest(
        agent_id=agent_id,
        ek_certificate=device.read_ek_certificate(),
        ek_public=device.ek_public(),
        ak_public=device.ensure_ak(),
    )


def _database_bytes(registrar: RunningRegistrar) -> bytes:
    """Everything a local user who can read the database has: the file, its -wal and -shm."""
    files = sorted(registrar.database.parent.glob(registrar.database.name + "*"))
    assert registrar.database in files
    return b"".join(path.read_bytes() for path in files)


def _column_values(database: Path) -> list[bytes]:
    """Every value of every row of every table, as bytes (what ``sqlite3 file .dump`` shows)."""
    values: list[bytes] = []
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        tables = [
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        for table in tables:
            for row in connection.execute(f'SELECT * FROM "{table}"'):  # noqa: S608  # names from the schema
                for value in row:
                    if isinstance(value, bytes):
                        values.append(value)
                    elif isinstance(value, str):
                        values.append(value.encode())
    return values


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """These tests read the SQLite file itself and check its modes: SQLite only."""
    return f"sqlite:///{tmp_path / 'registrar.sqlite'}"


@pytest.mark.swtpm
def test_nothing_in_the_database_computes_a_valid_proof(
    swtpm: SwtpmInstance, registrar: RunningRegistrar, client: RegistrarClient
) -> None:
    """Attack by a local reader of the SQLite file: with a challenge open, search the file for
    anything that is the proof or makes it. The secret (recovered here by the genuine TPM, to
    know what to look for) and the proof appear nowhere, in any encoding, and no 32 bytes of the
    file used as the secret give the proof. The genuine node still activates afterwards."""
    with TpmDevice(swtpm.tcti) as device:
        request = _request(device, "victim")
        answer = client.enrol(request)
        secret = device.activate_credential(
            answer.challenge.credential_blob, answer.challenge.encrypted_secret
        )
    digest = enrolment_digest(enrolment_body(request))
    proof = activation_proof(secret, digest)
    data = _database_bytes(registrar)
    for value in (secret, proof):
        for form in (
            value,
            value.hex().encode(),
            value.hex().upper().encode(),
            base64.b64encode(value),
        ):
            assert form not in data
    windows = (data[i : i + 32] for i in range(len(data) - 31))
    assert not any(hmac.compare_digest(activation_proof(w, digest), proof) for w in windows)
    for value in _column_values(registrar.database):  # what a reader of the rows has
        assert value != proof
        assert activation_proof(value, digest) != proof
    key = (registrar.database.parent / STATE_DIR / KEY_FILE).read_bytes()
    assert key not in data
    assert client.activate("victim", proof).state == "active"


def test_state_is_created_owner_only(registrar: RunningRegistrar) -> None:
    state_dir = registrar.database.parent / STATE_DIR
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    key = state_dir / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_bytes()) == 32
    assert stat.S_IMODE(registrar.database.stat().st_mode) == 0o600


def _start(workdir: Path, trust_dir: Path) -> None:
    settings = load_settings(
        database_url=f"sqlite:///{workdir / 'registrar.sqlite'}",
        registrar_state_dir=workdir / STATE_DIR,
        ek_ca_dir=trust_dir,
    )
    app = create_app(settings)
    app.extensions["geoattest.engine"].dispose()


@pytest.mark.parametrize(
    ("path", "mode"),
    [
        ("registrar.sqlite", 0o644),
        ("registrar.sqlite", 0o660),
        (STATE_DIR, 0o755),
        (f"{STATE_DIR}/{KEY_FILE}", 0o640),
        (f"{STATE_DIR}/{KEY_FILE}", 0o604),
    ],
)
def test_start_refuses_state_that_others_can_read(
    tmp_path: Path, trust_dir: Path, path: str, mode: int
) -> None:
    _start(tmp_path, trust_dir)  # first start creates everything owner-only
    (tmp_path / path).chmod(mode)
    with pytest.raises(ConfigurationError, match=rf"{tmp_path / path} has mode {mode:04o}") as e:
        _start(tmp_path, trust_dir)
    assert "chmod" in e.value.message
    (tmp_path / path).chmod(0o700 if (tmp_path / path).is_dir() else 0o600)
    _start(tmp_path, trust_dir)  # fixed as the message says: starts again


def test_start_refuses_a_key_file_that_is_not_a_key(tmp_path: Path, trust_dir: Path) -> None:
    _start(tmp_path, trust_dir)
    (tmp_path / STATE_DIR / KEY_FILE).write_bytes(b"short")
    with pytest.raises(ConfigurationError, match="holds 5 bytes, not a 32-byte key"):
        _start(tmp_path, trust_dir)


@pytest.mark.swtpm
def test_an_open_enrolment_survives_a_restart(
    tmp_path: Path, trust_dir: Path, swtpm: SwtpmInstance
) -> None:
    """The enrolment key is kept, not drawn per start: a challenge issued before a restart is
    still answered after it."""
    with TpmDevice(swtpm.tcti) as device:
        request = _request(device, "restarted")
        with running_registrar(tmp_path, trust_dir) as before:
            first = before.client()
            answer = first.enrol(request)
            first.close()
        secret = device.activate_credential(
            answer.challenge.credential_blob, answer.challenge.encrypted_secret
        )
    with running_registrar(tmp_path, trust_dir) as after:
        client = after.client()
        proof = activation_proof(secret, enrolment_digest(enrolment_body(request)))
        assert client.activate("restarted", proof).state == "active"
        client.close()
