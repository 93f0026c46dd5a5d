"""The verifier API the token benchmark drives: ``geoattest verifier serve`` processes on the
runner's database and Redis, as behind a balancer."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from geoattest.dev.procs import free_port
from geoattest.settings import load_settings
from tests.support.identity_trust import unused_identity_trust
from tests.support.runner_stack import RunnerStack
from tests.support.service_process import verifier_api
from tests.support.verifier_stack import settings_environment


@contextmanager
def api_processes(
    runner: RunnerStack, workdir: Path, redis_url: str, count: int, processes: int | None
) -> Iterator[list[str]]:
    """``count`` API servers on the same database, Redis and keys (as behind a balancer), each
    of ``processes`` processes (None: the serve command's default, one per core)."""
    with contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(api_process(runner, workdir, redis_url, i, processes))
            for i in range(count)
        ]


@contextmanager
def api_process(
    runner: RunnerStack,
    workdir: Path,
    redis_url: str,
    index: int = 0,
    processes: int | None = None,
) -> Iterator[str]:
    """``geoattest verifier serve`` on the runner's database and Redis (a process of its own)."""
    port = free_port()
    settings = load_settings(
        database_url=runner.database_url,
        redis_url=redis_url,
        registrar_url="http://127.0.0.1:9",
        verifier_keys_dir=workdir / "keys",
        verifier_tls_dir=workdir / "tls",
        verifier_port=port,
        log_level="WARNING",
        verifier_processes=processes,
        **unused_identity_trust(workdir),
    )
    api = verifier_api(settings_environment(settings), workdir, port, name=f"api-{index}")
    api.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        api.stop()
