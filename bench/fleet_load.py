"""Serve a simulated fleet and measure the evidence rate it answers, from another process.

    python -m bench.fleet_load --agents 1000 --measure 10 [--connections 8] [--tls-dir DIR]

Without ``--measure`` the fleet is served until Ctrl-C (for manual runs against a verifier).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

from geoattest.tls_material import ClientTlsFiles
from tests.support.agent_simulator import make_simulators
from tests.support.fleet_server import (
    AGENTS_PREFIX,
    FleetServer,
    FleetTls,
    agent_path,
    client_ssl_context,
    fleet_tls,
)
from tests.support.software_pki import make_ca


def _load_client(
    host: str,
    port: int,
    agent_ids: list[str],
    seconds: float,
    connections: int,
    tls: tuple[Path, ClientTlsFiles] | None,
    out: object,
) -> None:
    """Runs in another process: ``connections`` keep-alive connections posting evidence
    requests round-robin over the agents for ``seconds``; puts (requests, errors) on ``out``."""
    request_body = json.dumps(
        {"nonce": os.urandom(20).hex(), "pcrs": {"sha256": [0, 1, 2, 3, 4, 5, 6, 7, 10]}}
    ).encode()

    async def one(conn: int, deadline: float) -> tuple[int, int]:
        context = client_ssl_context(*tls) if tls else None
        reader, writer = await asyncio.open_connection(host, port, ssl=context)
        done = errors = 0
        i = conn
        while time.monotonic() < deadline:
            agent_id = agent_ids[i % len(agent_ids)]
            i += connections
            head_out = (
                f"POST {agent_path(agent_id)}/v1/evidence HTTP/1.1\r\nHost: x\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(request_body)}\r\n\r\n"
            )
            writer.write(head_out.encode() + request_body)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            done += 1
            errors += not head.startswith(b"HTTP/1.1 200")
        writer.close()
        await writer.wait_closed()
        return done, errors

    async def run() -> tuple[int, int]:
        deadline = time.monotonic() + seconds
        results = await asyncio.gather(*(one(c, deadline) for c in range(connections)))
        return sum(r[0] for r in results), sum(r[1] for r in results)

    out.put(asyncio.run(run()))  # type: ignore[attr-defined]  # a multiprocessing queue


def measure_rate(
    server: FleetServer, seconds: float, connections: int = 8, tls: FleetTls | None = None
) -> float:
    """Evidence requests per second the fleet answers to a client in another process."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    host, port = server.base_url.split("://", 1)[1].rsplit(":", 1)
    client_tls = None if tls is None else (tls.server_cert, tls.client)
    process = context.Process(
        target=_load_client,
        args=(host, int(port), list(server.sims), seconds, connections, client_tls, queue),
    )
    process.start()
    done, errors = queue.get(timeout=seconds + 60)
    process.join()
    queue.close()
    queue.join_thread()
    if errors:
        raise RuntimeError(f"{errors} of {done} evidence requests failed")
    return float(done) / seconds


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--measure", type=float, default=0.0, help="measure for N seconds, exit")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--tls-dir", type=Path, help="serve HTTPS with mTLS material kept here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    sims = make_simulators(args.agents, make_ca())
    print(f"{len(sims)} simulated agents in {time.perf_counter() - started:.1f} s", flush=True)
    tls = fleet_tls(args.tls_dir) if args.tls_dir else None
    server = FleetServer(sims, port=args.port, ssl_context=tls.server_context if tls else None)
    with server:
        print(f"serving on {server.base_url}{AGENTS_PREFIX}<agent_id>/v1/evidence", flush=True)
        if args.measure:
            rate = measure_rate(server, args.measure, args.connections, tls)
            print(f"{rate:.0f} evidence requests/s over {args.connections} connections", flush=True)
            return
        with suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
