"""``ServiceProcess.children`` finds every child, whichever thread forked it: the fault tests
SIGKILL a Celery worker's pool by it, and billiard forks replacement pool processes from a
thread of its own (a child missed there would live on and judge after the "kill")."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.support.service_process import ServiceProcess

# A parent whose second thread forks a child and stays alive (a thread that exits hands its
# children to the main thread, which would hide the case).
PARENT = """
import subprocess, sys, threading, time
def fork():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    print(child.pid, flush=True)
    time.sleep(30)
threading.Thread(target=fork, daemon=True).start()
time.sleep(30)
"""


def test_a_child_forked_by_another_thread_is_found(tmp_path: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        service = ServiceProcess(
            "parent", [], env={}, log_path=tmp_path / "log", cwd=tmp_path, ready=lambda _: True
        )
        service.process = parent  # type: ignore[assignment]  # a Popen[str], not started by it
        deadline = time.monotonic() + 5
        while child not in (found := service.children()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert found == [child]
        main_thread = Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split()
        assert str(child) not in main_thread  # the case the old reading missed
    finally:
        subprocess.run(["pkill", "-KILL", "-P", str(parent.pid)], check=False)
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
