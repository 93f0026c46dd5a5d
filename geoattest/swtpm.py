"""swtpm tooling for development, tests and ``deploy/quickstart``: a private manufacturer CA and
software TPMs whose EK certificates it issues.

- ``SwtpmCa``: a test "TPM manufacturer" made with ``swtpm_localca`` configured into one directory.
  Its root certificate and issuing certificate form the trust store a registrar is given.
- ``SwtpmInstance``: one swtpm state directory, manufactured with ``swtpm_setup`` (EK + platform
  certificates signed by a ``SwtpmCa``, NVRAM locked), and served on a loopback TCP port pair.

This is not production code: production nodes talk to ``/dev/tpmrm0``. Nothing here weakens a check;
it makes a TPM with a real certificate chain.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from geoattest.errors import ConfigurationError

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
_APT_PACKAGE = {"swtpm": "swtpm", "swtpm_setup": "swtpm-tools", "swtpm_localca": "swtpm-tools"}
_SETUP_TIMEOUT_S = 120.0
_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 5.0
# TPM identity passed to swtpm_localca when it is run only to create the CA (the values swtpm_setup
# passes for swtpm 0.7).
_SPEC_ARGS = (
    "--tpm-spec-family", "2.0", "--tpm-spec-level", "0", "--tpm-spec-revision", "164",
    "--tpm-manufacturer", "id:00001014", "--tpm-model", "swtpm", "--tpm-version", "id:20191023",
)  # fmt: skip


def require_binary(name: str) -> str:
    """Path of an swtpm tool; raises ConfigurationError naming the apt package if absent."""
    path = shutil.which(name)
    if path is None:
        package = _APT_PACKAGE.get(name, name)
        raise ConfigurationError(
            f"{name} not found on PATH: install the Debian package {package} "
            f"(apt-get install {package})"
        )
    return path


def free_port_pair(host: str = LOOPBACK, *, attempts: int = 50) -> int:
    """A port P such that P and P+1 were both free on ``host`` a moment ago (server, control).

    Another process may still take them before swtpm binds; ``SwtpmInstance.start`` retries with a
    new pair when it chose the port itself. Raises ConfigurationError when no pair is found.
    """
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as first:
            first.bind((host, 0))
            port = int(first.getsockname()[1])
            if port >= 65535:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as second:
                try:
                    second.bind((host, port + 1))
                except OSError:
                    continue
        return port
    raise ConfigurationError(f"no free port pair found on {host} after {attempts} attempts")


def _run(argv: list[str], what: str) -> None:
    """Run a tool to completion; raises ConfigurationError with its output when it fails."""
    logger.debug("running %s", " ".join(argv))
    done = subprocess.run(  # noqa: S603 - argv is built from fixed tool paths and our own paths
        argv, capture_output=True, text=True, timeout=_SETUP_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-2000:]
        raise ConfigurationError(f"{what} failed (exit {done.returncode}): {output}")


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


@dataclass(frozen=True, slots=True)
class SwtpmCa:
    """A private EK-certificate CA in ``directory`` (root + issuing CA, made by swtpm_localca)."""

    directory: Path

    @property
    def root_cert(self) -> Path:
        """PEM of the self-signed root CA."""
        return self.directory / "swtpm-localca-rootca-cert.pem"

    @property
    def issuer_cert(self) -> Path:
        """PEM of the intermediate CA that signs EK and platform certificates."""
        return self.directory / "issuercert.pem"

    @property
    def trust_store(self) -> tuple[Path, Path]:
        """The certificates a registrar must trust to accept this CA's TPMs (root, issuer)."""
        return (self.root_cert, self.issuer_cert)

    @property
    def localca_config(self) -> Path:
        return self.directory / "swtpm-localca.conf"

    @property
    def localca_options(self) -> Path:
        return self.directory / "swtpm-localca.options"

    @property
    def setup_config(self) -> Path:
        """The ``swtpm_setup --config`` file that routes certificate creation to this CA."""
        return self.directory / "swtpm_setup.conf"

    @classmethod
    def create(cls, directory: Path) -> SwtpmCa:
        """Create (or reuse) the CA in ``directory``: config files, root and issuing certificate.

        Idempotent: an existing CA's keys are kept. Raises ConfigurationError when swtpm_localca is
        missing or fails.
        """
        directory = directory.resolve()
        directory.mkdir(parents=True, exist_ok=True)
        ca = cls(directory)
        ca._write_configs()
        if not (ca.root_cert.exists() and ca.issuer_cert.exists()):
            ca._issue_dummy_ek_cert()
            logger.info("created swtpm test CA in %s", directory)
        return ca

    def _write_configs(self) -> None:
        d = self.directory
        _write_if_changed(
            self.localca_config,
            f"statedir = {d}\nsigningkey = {d}/signkey.pem\n"
            f"issuercert = {self.issuer_cert}\ncertserial = {d}/certserial\n",
        )
        _write_if_changed(
            self.localca_options,
            "--platform-manufacturer geoattest\n--platform-version 2.1\n--platform-model swtpm\n",
        )
        _write_if_changed(
            self.setup_config,
            f"create_certs_tool = {require_binary('swtpm_localca')}\n"
            f"create_certs_tool_config = {self.localca_config}\n"
            f"create_certs_tool_options = {self.localca_options}\n"
            "active_pcr_banks = sha256\n",
        )

    def _issue_dummy_ek_cert(self) -> None:
        """swtpm_localca creates its CA on first use: issue one certificate for a throwaway key."""
        from cryptography.hazmat.primitives.asymmetric import ec

        numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
        scratch = self.directory / "bootstrap"
        scratch.mkdir(exist_ok=True)
        try:
            argv = [
                require_binary("swtpm_localca"), "--type", "ek", "--tpm2",
                "--ek", f"x={numbers.x:064x},y={numbers.y:064x}", "--dir", str(scratch),
                "--configfile", str(self.localca_config), "--optsfile", str(self.localca_options),
                *_SPEC_ARGS,
            ]  # fmt: skip
            _run(argv, f"swtpm_localca creating the CA in {self.directory}")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


class SwtpmInstance:
    """One software TPM: a state directory, served by ``swtpm socket`` on a TCP port pair.

    ``start`` runs swtpm as a child process (tests kill it) or, with ``daemon=True``, detached
    with a pid file (quickstart). ``restart`` is a reboot: the TPM starts with Startup(CLEAR) and
    no prior Shutdown, so the quote's resetCount increments.
    """

    def __init__(self, state_dir: Path, *, host: str = LOOPBACK) -> None:
        self.state_dir = state_dir.resolve()
        self.host = host
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._pid_file = self.state_dir / "swtpm.pid"

    # --- manufacturing ---------------------------------------------------------------------------

    @staticmethod
    def is_manufactured(state_dir: Path) -> bool:
        """True when ``state_dir`` already holds a TPM 2 state (swtpm's ``tpm2-00.permall``)."""
        return (state_dir / "tpm2-00.permall").exists()

    @classmethod
    def setup(cls, state_dir: Path, ca: SwtpmCa, *, ecc: bool = True) -> SwtpmInstance:
        """Manufacture a TPM 2 state in ``state_dir`` with EK and platform certificates from ``ca``.

        swtpm 0.7 always creates an RSA-2048 EK (certificate at NV 0x01C00002) and an ECC P-384 EK
        (high-range template, certificate at NV 0x01C00016); ``ecc`` selects an ECC storage primary
        key. Idempotent: an existing state is kept as it is. Raises ConfigurationError when
        swtpm_setup is missing or fails.
        """
        instance = cls(state_dir)
        if cls.is_manufactured(instance.state_dir):
            return instance
        require_binary("swtpm")
        instance.state_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            require_binary("swtpm_setup"),
            "--tpm2",
            "--tpmstate", str(instance.state_dir),
            "--create-ek-cert", "--create-platform-cert", "--lock-nvram",
            "--config", str(ca.setup_config),
        ]  # fmt: skip
        if ecc:
            argv.append("--ecc")
        _run(argv, f"swtpm_setup for {instance.state_dir}")
        logger.info("manufactured swtpm state in %s", instance.state_dir)
        return instance

    @classmethod
    def copy_of(cls, template_dir: Path, state_dir: Path) -> SwtpmInstance:
        """A new instance whose state is a copy of a manufactured (stopped) template state.

        The copy has the template's EK (same identity); it is a fast way for tests to get a fresh
        TPM. Raises ConfigurationError when the template is not manufactured.
        """
        if not cls.is_manufactured(template_dir):
            raise ConfigurationError(f"{template_dir} holds no swtpm TPM 2 state")
        shutil.copytree(
            template_dir,
            state_dir,
            ignore=shutil.ignore_patterns(".lock", "*.log", "*.pid", "*.port"),
        )
        return cls(state_dir)

    # --- running ---------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TPM command port (control port is ``port + 1``); raises if never started."""
        if self._port is None:
            raise ConfigurationError(f"swtpm for {self.state_dir} has not been started")
        return self._port

    @property
    def tcti(self) -> str:
        """The TCTI string geoattest settings take: ``swtpm:host=127.0.0.1,port=P``."""
        return f"swtpm:host={self.host},port={self.port}"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "swtpm.log"

    @property
    def running(self) -> bool:
        """True while our child swtpm, or a daemon found through the pid file, is alive."""
        if self._process is not None:
            return self._process.poll() is None
        return self._daemon_pid() is not None

    def start(
        self, port: int | None = None, *, daemon: bool = False, pid_file: Path | None = None
    ) -> None:
        """Serve the TPM on ``port`` (a free pair is chosen when None) and wait until it accepts.

        With ``daemon=True`` swtpm detaches and writes ``pid_file`` (default
        ``state_dir/swtpm.pid``); starting a daemon that is already running from that pid file is
        a no-op (its port is read back when ``port`` is None). Raises ConfigurationError when swtpm
        is missing, exits, or does not accept within 10 s.
        """
        if pid_file is not None:
            self._pid_file = pid_file.resolve()
        if daemon and self._daemon_pid() is not None:
            self._port = port if port is not None else self._recorded_port()
            logger.info("swtpm for %s already running", self.state_dir)
            return
        if self.running:
            raise ConfigurationError(f"swtpm for {self.state_dir} is already running")
        if not self.is_manufactured(self.state_dir):
            raise ConfigurationError(f"{self.state_dir} holds no swtpm state: run setup first")
        for attempt in range(3):
            chosen = port if port is not None else free_port_pair(self.host)
            try:
                self._launch(chosen, daemon=daemon)
                return
            except _PortBusy:
                if port is not None or attempt == 2:
                    raise ConfigurationError(
                        f"swtpm could not bind {self.host}:{chosen}/{chosen + 1}: ports in use"
                    ) from None
                logger.info(
                    "swtpm ports %s/%s taken meanwhile; trying another pair", chosen, chosen + 1
                )

    def _argv(self, port: int, *, daemon: bool) -> list[str]:
        argv = [
            require_binary("swtpm"), "socket", "--tpm2",
            "--tpmstate", f"dir={self.state_dir}",
            "--server", f"type=tcp,port={port},bindaddr={self.host}",
            "--ctrl", f"type=tcp,port={port + 1},bindaddr={self.host}",
            "--flags", "not-need-init,startup-clear",
            "--log", f"file={self.log_file},level=1",
        ]  # fmt: skip
        if daemon:
            argv += ["--daemon", "--pid", f"file={self._pid_file}"]
        return argv

    def _launch(self, port: int, *, daemon: bool) -> None:
        stderr_path = self.state_dir / "swtpm.stderr.log"
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(  # noqa: S603 - fixed binary, our own arguments
                self._argv(port, daemon=daemon),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=daemon,
            )
        if daemon:
            returncode = process.wait(timeout=_START_TIMEOUT_S)
            if returncode != 0:
                self._raise_failed_start(port, stderr_path, returncode)
            self._port_file.write_text(f"{port}\n")
        else:
            self._process = process
        self._port = port
        self._wait_until_accepting(port, stderr_path)
        logger.info("swtpm for %s listening on %s:%s", self.state_dir, self.host, port)

    def _wait_until_accepting(self, port: int, stderr_path: Path) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                returncode = self._process.wait()
                self._process = None
                self._raise_failed_start(port, stderr_path, returncode)
            with contextlib.suppress(OSError), socket.create_connection((self.host, port), 0.5):
                return
            time.sleep(0.02)
        self.stop()
        raise ConfigurationError(f"swtpm on {self.host}:{port} did not accept within 10 s")

    def _raise_failed_start(self, port: int, stderr_path: Path, returncode: int) -> None:
        output = _tail(stderr_path) + _tail(self.log_file)
        if "Address already in use" in output:
            raise _PortBusy(port)
        raise ConfigurationError(f"swtpm exited with status {returncode} on start: {output}")

    def stop(self) -> None:
        """Stop swtpm (SIGTERM, then SIGKILL after 5 s): a power cut, volatile state is lost.

        Idempotent. A daemon (also one started by another process) is found through the pid file
        and stopped only if that pid is still a swtpm serving this state directory.
        """
        if self._process is not None:
            process, self._process = self._process, None
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=_STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        pid = self._daemon_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            _wait_for_exit(pid)

    def restart(self) -> None:
        """Reboot the TPM on the same ports: stop, then start with Startup(CLEAR)."""
        port = self.port
        daemon = self._process is None and self._daemon_pid() is not None
        self.stop()
        self.start(port, daemon=daemon, pid_file=self._pid_file)

    @property
    def _port_file(self) -> Path:
        return self.state_dir / "swtpm.port"

    def _recorded_port(self) -> int | None:
        """The port a daemon was started on (written next to its state), if known."""
        try:
            return int(self._port_file.read_text())
        except (OSError, ValueError):
            return None

    def _daemon_pid(self) -> int | None:
        """The pid in the pid file if it is a live swtpm for this state dir, else None."""
        if not self._pid_file.exists():
            return None
        try:
            pid = int(self._pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (ValueError, OSError):
            return None
        if not _alive(pid) or not cmdline or not cmdline[0].endswith(b"swtpm"):
            return None
        if f"dir={self.state_dir}".encode() not in cmdline:
            return None
        return pid

    def __enter__(self) -> Self:
        if not self.running:
            self.start(self._port)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"SwtpmInstance({str(self.state_dir)!r}, port={self._port})"


class _PortBusy(Exception):
    """swtpm could not bind its ports (internal: start() retries with another pair)."""


def _tail(path: Path, limit: int = 1500) -> str:
    """The last ``limit`` bytes of a log file as text ("" when it does not exist)."""
    try:
        return path.read_bytes()[-limit:].decode(errors="replace").strip()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped by init) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rpartition(")")[2].split()[:1]
    return state not in (["Z"], ["X"])


def _wait_for_exit(pid: int) -> None:
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.01)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
