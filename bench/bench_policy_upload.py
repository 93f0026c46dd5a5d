"""A whole-system runtime policy uploaded and used: upload + parse + first round, and memory.

    .venv/bin/python bench/bench_policy_upload.py [--entries 400000] [--database sqlite|postgresql]

A real deployment (``tests.support.fault_stack``: redis-server, registrar, ``geoattest verifier
serve|worker|beat`` as their own processes, one simulated agent over mTLS) attests one agent
under a small policy. Then a policy with ``--entries`` file digests (plus the agent's own) is PUT
gzip-compressed over HTTP in place of it. Reported:

* upload: from the start of the PUT to its answer (the API read, decompressed, validated,
  canonicalised, parsed and stored it, and answered with its name, version, digest and size);
* first round: from the answer to the end of the agent's first passed round that started
  after it (the worker process reloaded the fleet configuration, parsed the policy, replayed
  the agent's IMA log against it);
* memory: the API process's peak RSS (VmHWM) over its start-up figure, and each worker pool
  process's RSS after the round over its figure before the upload (a loaded policy's cost).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import hashlib
import json
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests

from tests.support.agent_simulator import policy_document
from tests.support.fault_stack import POLICY, FaultStack, fault_stack
from tests.support.postgres_server import running_postgres


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _big_policy(stack: FaultStack, entries: int) -> dict[str, object]:
    document = policy_document(next(iter(stack.sims.values())))
    runtime = document["runtime_policy"]
    assert isinstance(runtime, dict)
    digests = runtime["digests"]
    assert isinstance(digests, dict)
    for i in range(entries):
        digest = hashlib.sha256(i.to_bytes(4, "big")).hexdigest()
        digests[f"/usr/lib/pkg{i // 200:05d}/lib{i % 13}/file-{i}.so"] = ["sha256:" + digest]
    return document


def _first_pass_after(stack: FaultStack, agent_id: str, after: dt.datetime) -> dt.datetime:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        page = stack.verifier.get(f"/v1/agents/{agent_id}/rounds", params={"limit": 1000}).json()
        for item in page["items"]:
            started = dt.datetime.fromisoformat(str(item.get("started_at", "1970-01-01T00:00Z")))
            if item.get("kind") == "round" and started > after and item["outcome"] == "passed":
                return dt.datetime.fromisoformat(str(item["ended_at"]))
        time.sleep(0.05)
    raise SystemExit("no passed round under the new policy in 120 s")


def run(entries: int, database: str) -> dict[str, object]:
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if database == "sqlite":
            url = f"sqlite:///{work / 'verifier.sqlite'}"
            registrar_url = f"sqlite:///{work / 'registrar.sqlite'}"
        else:
            server = stack.enter_context(running_postgres())
            url = stack.enter_context(server.database())
            registrar_url = stack.enter_context(server.database())
        deployment = stack.enter_context(
            fault_stack(work, database=database, database_url=url,
                        registrar_database_url=registrar_url, agents=1)
        )  # fmt: skip
        agent_id = deployment.active[0]
        document = _big_policy(deployment, entries)
        raw = json.dumps(document).encode()
        body = gzip.compress(raw, 6)
        api_before = _status_kb(deployment.api.pid, "VmRSS")
        pool = deployment.worker.children()
        pool_before = {pid: _status_kb(pid, "VmRSS") for pid in pool}
        key = deployment.verifier.api_key
        started = time.monotonic()
        answer = requests.put(
            f"{deployment.verifier.url}/v1/policies/{POLICY}",
            data=body,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json",
                     "Content-Encoding": "gzip"},
            timeout=300,
        )  # fmt: skip
        upload = time.monotonic() - started
        answered = dt.datetime.now(dt.UTC)
        assert answer.status_code == 200, answer.text[:500]
        ended = _first_pass_after(deployment, agent_id, answered)
        first_round = (ended - answered).total_seconds()
        api_peak = _status_kb(deployment.api.pid, "VmHWM")
        pool_after = {pid: _status_kb(pid, "VmRSS") for pid in pool}
        return {
            "entries": entries,
            "database": database,
            "json_mb": round(len(raw) / 1e6, 1),
            "gzip_mb": round(len(body) / 1e6, 1),
            "answer_bytes": len(answer.content),
            "stored_mb": round(answer.json()["size_bytes"] / 1e6, 1),
            "upload_s": round(upload, 2),
            "first_round_s": round(first_round, 2),
            "total_s": round(upload + first_round, 2),
            "api_rss_start_mb": round(api_before / 1024),
            "api_peak_rss_mb": round(api_peak / 1024),
            "worker_pool_rss_delta_mb": [
                round((pool_after[p] - pool_before[p]) / 1024) for p in pool
            ],
            "worker_pool_rss_after_mb": [round(pool_after[p] / 1024) for p in pool],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=400_000)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    print(json.dumps(run(args.entries, args.database)))


if __name__ == "__main__":
    main()
