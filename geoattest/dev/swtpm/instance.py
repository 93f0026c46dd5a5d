"""One software TPM: a swtpm state directory, manufactured and served on loopback ports."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from geoattest.dev.swtpm._tools import (
    LOOPBACK,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    PortBusy,
    alive,
    free_port_pair,
    require_binary,
    run_tool,
    tail,
    wait_for_exit,
)
from geoattest.dev.swtpm.ca import SwtpmCa
from geoattest.dev.swtpm.shutdown import shutdown_clear
from geoattest.errors import ConfigurationError

logger = logging.getLogger(__name__)


class SwtpmInstance:
    """One software TPM: a state directory, served by ``swtpm socket`` on a TCP port pair.

    ``start`` runs swtpm as a child process or, with ``daemon=True``, detached with a pid file.
    ``stop`` shuts the TPM down in order (TPM2_Shutdown(CLEAR), see ``shutdown``) unless told to
    cut the power; ``restart`` is a reboot: the TPM starts again with Startup(CLEAR), so the
    quote's resetCount increments either way.
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
        run_tool(argv, f"swtpm_setup for {instance.state_dir}")
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
            except PortBusy:
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
                # Its own process group even as a child: a Ctrl-C in the terminal must not reach
                # swtpm before ``stop`` has shut the TPM down in order.
                start_new_session=daemon,
                process_group=None if daemon else 0,
            )
        if daemon:
            returncode = process.wait(timeout=START_TIMEOUT_S)
            if returncode != 0:
                self._raise_failed_start(port, stderr_path, returncode)
            self._port_file.write_text(f"{port}\n")
        else:
            self._process = process
        self._port = port
        self._wait_until_accepting(port, stderr_path)
        logger.info("swtpm for %s listening on %s:%s", self.state_dir, self.host, port)

    def _wait_until_accepting(self, port: int, stderr_path: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
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
        output = tail(stderr_path) + tail(self.log_file)
        if "Address already in use" in output:
            raise PortBusy(port)
        raise ConfigurationError(f"swtpm exited with status {returncode} on start: {output}")

    def stop(self, *, orderly: bool = True) -> None:
        """Stop swtpm: TPM2_Shutdown(CLEAR) first, then SIGTERM (SIGKILL after 5 s).

        ``orderly=False`` skips the TPM2_Shutdown: a power cut, which a TPM counts toward
        dictionary-attack lockout once a DA-protected key was used (tests of that use it).
        Idempotent. A daemon (also one started by another process) is found through the pid file
        and stopped only if that pid is still a swtpm serving this state directory.
        """
        pid = self._daemon_pid()
        port = self._port if self._port is not None else self._recorded_port()
        if orderly and port is not None and (self._child_running() or pid is not None):
            shutdown_clear(self.host, port)
        if self._process is not None:
            process, self._process = self._process, None
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            wait_for_exit(pid)

    def _child_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def restart(self, *, orderly: bool = True) -> None:
        """Reboot the TPM on the same ports: stop (in order, or a power cut), then start with
        Startup(CLEAR)."""
        port = self.port
        daemon = self._process is None and self._daemon_pid() is not None
        self.stop(orderly=orderly)
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
        if not alive(pid) or not cmdline or not cmdline[0].endswith(b"swtpm"):
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
