"""Tokens: issuance through the verifier API, cached fetch over the workload socket, verification
throughput against raw ES256, and fresh-on-demand tokens against a plain round.

    .venv/bin/python bench/bench_tokens.py [--part issue|cached|verify|fresh|all]
        [--agents 8] [--clients 8] [--seconds 10] [--database sqlite|postgresql]
        [--servers 1] [--processes N]

- **issue**: ``geoattest verifier serve`` (waitress) in its own process on a real SQLite file
  (or a throwaway PostgreSQL cluster's database) and redis-server; ``--agents`` simulated
  agents attested by the production round runner and holding TPM-bound token sessions;
  ``--clients`` client threads (keep-alive, one session each, each request a fresh ES256-signed
  JWS) post ``POST /v1/tokens`` for ``--seconds``. Latency is client-observed (request sent to
  token received); every token is stored in ``verifier_tokens`` before it is answered.
  Nearest-rank percentiles.
- **cached**: the agent's workload API on a Unix socket (in this process, its verifier client on
  the API above), asked ``--seconds`` long by a separate process (a keep-alive client) for the same
  token: every answer is a cache hit, with the caller identified and checked per request.
- **verify**: ``verify_token`` (the relying-party library) and a raw ES256 check of the same
  token (split, base64url, one ECDSA verification), alternated in batches of 50 in one run:
  the ratio of the two rates, and the median of the ratios of adjacent batch pairs (a burst of
  load from other processes skews one pair, not the median).
- **fresh**: tokens with a relying party's nonce (a round run at once, in the API, through the
  ``RoundRunner``) against plain rounds of the same agents by the same runner, alternated.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests

from agent.workload.api import WorkloadApi
from agent.workload.peer import ExecutableHasher
from agent.workload.server import make_workload_server
from agent.workload.tokens import WorkloadTokens
from agent.workload.verifier_client import VerifierTokenClient
from bench._fleet_stats import percentile
from bench._token_api import api_processes
from bench._verifier_settings import verifier_database
from geoattest.jose import (
    b64url,
    es256_valid,
    parse_jws,
)
from geoattest.wire import PolicyDocument
from tests.support.agent_simulator import policy_document
from tests.support.redis_server import running_redis
from tests.support.runner_stack import ALLOWED, POLICY, RunnerStack, runner_stack
from tests.support.token_requests import BASH, open_session, signed_request
from tests.support.token_stack import SimQuoter, order, token_stack
from verifier.core.policy import canonical_document, document_digest
from verifier.tokens.verify import Expected, TrustedKeys, VerifiedToken, verify_token


def _ms(values: Sequence[float]) -> str:
    return (
        f"p50 {percentile(values, 0.5) * 1e3:.2f} ms, p99 {percentile(values, 0.99) * 1e3:.2f} ms"
    )


def _long_lease(runner: RunnerStack) -> None:
    """The fleet's policy with a one-hour lease: the window needs no rounds to stay attested."""
    sim = next(iter(runner.sims.values()))
    document = policy_document(sim, ALLOWED) | {"max_age_seconds": 3600}
    canonical = canonical_document(PolicyDocument.model_validate(document))
    runner.store.put_policy(
        POLICY, canonical, document_digest(canonical), dt.datetime.now(dt.UTC), max_age_seconds=3600
    )
    runner.hot.bump_config_version()


def _attest_all(runner: RunnerStack) -> None:
    for agent_id, sim in runner.sims.items():
        sim.measure("/usr/bin/bash", content=b"bash")
        report = runner.round(agent_id)
        assert report is not None
        assert report.committed is not None


def bench_issue(
    runner: RunnerStack, urls: Sequence[str], clients: int, seconds: float
) -> dict[str, object]:
    agents = sorted(runner.sims)
    url = urls[0]
    sessions = [open_session(url, a, runner.sims[a]) for a in agents]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    for _warm in range(50):  # warm the caches and the connection pools
        requests.post(f"{url}/v1/tokens", data=signed_request(agents[0], *sessions[0]), timeout=10)
    stop = time.monotonic() + seconds

    def client(index: int) -> None:
        agent_id = agents[index % len(agents)]
        session_id, key = sessions[index % len(agents)]
        target = urlsplit(urls[index % len(urls)])
        connection = http.client.HTTPConnection(target.hostname or "", target.port, timeout=30)
        headers = {"Content-Type": "application/jose"}
        while time.monotonic() < stop:
            body = signed_request(agent_id, session_id, key)
            started = time.perf_counter()
            connection.request("POST", "/v1/tokens", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            elapsed = time.perf_counter() - started
            if response.status == 201:
                latencies[index].append(elapsed)
            else:
                errors[index] += 1
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    window = time.monotonic() - started
    flat = [v for per in latencies for v in per]
    return {
        "tokens": len(flat),
        "errors": sum(errors),
        "tokens_per_s": len(flat) / window,
        "p50_ms": percentile(flat, 0.5) * 1e3,
        "p99_ms": percentile(flat, 0.99) * 1e3,
    }


def bench_serial_latency(runner: RunnerStack, url: str, count: int) -> dict[str, float]:
    """One client, one request at a time: the latency of issuance without queueing."""
    agent_id = sorted(runner.sims)[0]
    session_id, key = open_session(url, agent_id, runner.sims[agent_id])
    http = requests.Session()
    values = []
    for _ in range(count):
        body = signed_request(agent_id, session_id, key)
        started = time.perf_counter()
        response = http.post(
            f"{url}/v1/tokens", data=body, headers={"Content-Type": "application/jose"}
        )
        values.append(time.perf_counter() - started)
        assert response.status_code == 201, response.text
    return {"p50_ms": percentile(values, 0.5) * 1e3, "p99_ms": percentile(values, 0.99) * 1e3}


CACHED_CLIENT = """
import json, socket, sys, time
path, seconds, keep_alive = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "1"
body = b'{"type":"por","audience":"svc"}'
request = (b"POST /v1/token HTTP/1.1\\r\\nHost: x\\r\\nGeoattest-Workload: true\\r\\n"
           b"Content-Type: application/json\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body) + body)
kept = None
def ask():
    global kept
    if kept is None:
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        kept = (s, s.makefile("rb"))
    s, f = kept
    s.sendall(request)
    length = 0
    while (line := f.readline()) not in (b"\\r\\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    answer = f.read(length)  # as any HTTP client: the body's length, not the close
    if not keep_alive:
        f.close()
        s.close()
        kept = None
    assert b'"cached":true' in answer, answer[:300]
for _ in range(20):
    try:
        ask()
    except AssertionError:
        pass
values = []
stop = time.monotonic() + seconds
while time.monotonic() < stop:
    started = time.perf_counter()
    ask()
    values.append(time.perf_counter() - started)
print(json.dumps(values))
"""


def bench_cached(runner: RunnerStack, url: str, workdir: Path, seconds: float) -> dict[str, object]:
    agent_id = sorted(runner.sims)[0]
    client = VerifierTokenClient(url, agent_id, SimQuoter(runner.sims[agent_id]))
    tokens = WorkloadTokens(client, poll_seconds=2.0)
    path = workdir / "workload.sock"
    server = make_workload_server(
        WorkloadApi(tokens, ExecutableHasher(max_bytes=512 * 1024 * 1024)), path
    )
    tokens.start()  # the revocation poller runs, as in the agent
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    results: dict[str, object] = {}
    try:
        for name, keep in (("new_connection", "0"), ("keep_alive", "1")):
            done = subprocess.run(
                [sys.executable, "-c", CACHED_CLIENT, str(path), str(seconds), keep],
                capture_output=True, text=True, timeout=seconds + 60, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-3000:])
            values = json.loads(done.stdout)
            results[name] = {
                "requests": len(values),
                "p50_ms": percentile(values, 0.5) * 1e3,
                "p99_ms": percentile(values, 0.99) * 1e3,
                "per_s": len(values) / seconds,
            }
    finally:
        server.shutdown()
        server.remove()
        thread.join(timeout=5)
        tokens.close()
    return results


VERIFY_BATCH = 50


def bench_verify(url: str, runner: RunnerStack, seconds: float) -> dict[str, float]:
    agent_id = sorted(runner.sims)[0]
    client = VerifierTokenClient(url, agent_id, SimQuoter(runner.sims[agent_id]))
    token = client.request(order(runner.sims[agent_id])).token
    keys = TrustedKeys.from_jwks(requests.get(f"{url}/.well-known/jwks.json", timeout=10).content)
    expected = Expected(audience="svc", workloads=frozenset({BASH}))
    now = dt.datetime.now(dt.UTC)
    assert isinstance(verify_token(token, keys, expected, now), VerifiedToken)
    kid = parse_jws(token).header.kid or ""
    public = keys.keys[kid]

    def ours() -> None:
        verify_token(token, keys, expected, now)

    def raw() -> None:
        head, body, signature = token.split(".")
        import base64

        sig = base64.urlsafe_b64decode(signature + "==")
        if not es256_valid(public, f"{head}.{body}".encode(), sig):
            raise AssertionError

    counts = {"ours": 0, "raw": 0}
    spent = {"ours": 0.0, "raw": 0.0}
    pairs: list[float] = []  # ours/raw of each pair of adjacent batches
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:  # alternate batches so both see the same machine
        took = {}
        for name, fn in (("ours", ours), ("raw", raw)):
            started = time.perf_counter()
            for _ in range(VERIFY_BATCH):
                fn()
            took[name] = time.perf_counter() - started
            spent[name] += took[name]
            counts[name] += VERIFY_BATCH
        pairs.append(took["raw"] / took["ours"])
    ours_rate, raw_rate = counts["ours"] / spent["ours"], counts["raw"] / spent["raw"]
    return {
        "ours_per_s": ours_rate,
        "raw_per_s": raw_rate,
        "ratio": ours_rate / raw_rate,
        # robust to a burst of load from other processes landing in one batch only
        "ratio_median_of_pairs": percentile(pairs, 0.5),
        "pairs": len(pairs),
    }


def bench_fresh(workdir: Path, redis_url: str, agents: int, count: int) -> dict[str, float]:
    with token_stack(workdir, redis_url, agents=agents) as stack:
        for agent_id, sim in stack.runner.sims.items():
            sim.measure("/usr/bin/bash", content=b"bash")
            stack.attest(agent_id)
        ids = sorted(stack.runner.sims)
        sessions = {a: open_session(stack.url, a, stack.runner.sims[a]) for a in ids}
        http = requests.Session()
        fresh: list[float] = []
        plain: list[float] = []
        for index in range(count):
            agent_id = ids[index % len(ids)]
            started = time.perf_counter()
            report = stack.runner.round(agent_id)
            plain.append(time.perf_counter() - started)
            assert report is not None
            assert report.committed is not None
            body = signed_request(agent_id, *sessions[agent_id], nonce=b64url(os.urandom(16)))
            started = time.perf_counter()
            response = http.post(
                f"{stack.url}/v1/tokens", data=body, headers={"Content-Type": "application/jose"}
            )
            fresh.append(time.perf_counter() - started)
            assert response.status_code == 201, response.text
        return {
            "plain_p50_ms": percentile(plain, 0.5) * 1e3,
            "plain_p99_ms": percentile(plain, 0.99) * 1e3,
            "fresh_p50_ms": percentile(fresh, 0.5) * 1e3,
            "fresh_p99_ms": percentile(fresh, 0.99) * 1e3,
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--part", choices=["issue", "cached", "verify", "fresh", "all"], default="all"
    )
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--servers", type=int, default=1, help="API servers (issue part)")
    parser.add_argument(
        "--processes", type=int, default=None, help="processes per API server (default: serve's)"
    )
    parser.add_argument("--fresh-count", type=int, default=300)
    parser.add_argument(
        "--database", choices=("sqlite", "postgresql"), default="sqlite",
        help="the verifier's database (postgresql: a throwaway cluster on a free port)",
    )  # fmt: skip
    args = parser.parse_args()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="bench-tokens-") as tmp:
        work = Path(tmp)
        with running_redis(work) as redis_url:
            if args.part in ("issue", "cached", "verify", "all"):
                with (
                    verifier_database(work, args.database) as database_url,
                    runner_stack(
                        work / "issue", redis_url, agents=args.agents, database_url=database_url
                    ) as runner,
                ):
                    _long_lease(runner)
                    _attest_all(runner)
                    with api_processes(
                        runner, work / "issue", redis_url, args.servers, args.processes
                    ) as urls:
                        url = urls[0]
                        if args.part in ("issue", "all"):
                            results["issue_serial"] = bench_serial_latency(runner, url, 2000)
                            results["issue"] = bench_issue(runner, urls, args.clients, args.seconds)
                        if args.part in ("cached", "all"):
                            results["cached"] = bench_cached(runner, url, work, args.seconds)
                        if args.part in ("verify", "all"):
                            results["verify"] = bench_verify(url, runner, args.seconds)
            if args.part in ("fresh", "all"):
                results["fresh"] = bench_fresh(
                    work / "fresh", redis_url, args.agents, args.fresh_count
                )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
