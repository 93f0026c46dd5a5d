"""``geoattest.prefork`` over real processes and real HTTP: several processes answer on one
port, a child that dies is replaced, SIGTERM stops them all, a child that fails to build its app
fails the start with its exit status."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import requests

SERVER = textwrap.dedent(
    """
    import os, sys
    from geoattest.prefork import listen, serve_processes

    def make_app():
        if sys.argv[2] == "fail":
            raise RuntimeError("no app")
        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [str(os.getpid()).encode()]
        return app

    sock = listen("127.0.0.1", 0)
    print(sock.getsockname()[1], flush=True)
    sys.exit(serve_processes(make_app, sock, processes=int(sys.argv[1]), threads=2,
                             ident="t", exit_status=lambda e: 7))
    """
)


def _start(tmp_path: Path, processes: int, mode: str = "ok") -> tuple[subprocess.Popen[str], str]:
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    process = subprocess.Popen(
        [sys.executable, str(script), str(processes), mode],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert process.stdout is not None
    port = process.stdout.readline().strip()
    return process, f"http://127.0.0.1:{port}"


def _pids(url: str, seconds: float, want: int) -> set[int]:
    seen: set[int] = set()
    deadline = time.monotonic() + seconds
    while len(seen) < want and time.monotonic() < deadline:
        with requests.Session() as fresh:  # a new connection each time: any process may take it
            seen.add(int(fresh.get(url, timeout=5).text))
    return seen


def test_processes_share_the_port_a_dead_one_is_replaced_and_sigterm_stops_all(
    tmp_path: Path,
) -> None:
    process, url = _start(tmp_path, 2)
    try:
        pids = _pids(url, 20, 2)
        assert len(pids) == 2
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        time.sleep(1.5)  # replaced after a second
        after = _pids(url, 20, 2)
        assert victim not in after
        assert len(after) == 2
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        for pid in after:  # every child is gone (reaped by the parent)
            assert not Path(f"/proc/{pid}").exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()


def test_a_child_that_cannot_build_its_app_fails_the_start(tmp_path: Path) -> None:
    process, _ = _start(tmp_path, 2, "fail")
    with process:  # closes its pipe
        assert process.wait(timeout=30) == 7
