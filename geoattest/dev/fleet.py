"""A local fleet on one machine, for quickstart and demos, built from the real parts.

A private TPM manufacturer CA, redis-server, the registrar, the verifier (API + Celery worker with
beat, the demo zones loaded), and per agent: a swtpm whose EK certificate the CA issued, an IMA
measurement list written by the emulator (no IMA in containers), a GNSS receiver replaying a demo
track at the current time (``geoattest.dev.demo_geo``; edge-05 walks a zone border), the agent's
evidence API over mTLS and its workload API for tokens. The policy checks location from the
start: ``inside`` one of the demo zones. Everything lives under one state directory and is reused
by the next run:

    ca/ ek-ca/ tpm/<agent>/ agent/<agent>/ ima/<agent>.log gnss/<agent>.nmea run/<agent>.sock
    verifier-tls/ redis/ logs/ registrar.sqlite verifier.sqlite fleet.json (the running fleet)

Each run restarts the swtpms, which is a reboot: the agents' IMA logs start over. Every swtpm is
shut down in order when the fleet stops (TPM2_Shutdown), and a TPM found in dictionary-attack
lockout at start (left by power cuts: a killed fleet) is reset, since these are dev TPMs.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from agent.enrolment import ApiEndpoint, enrol
from agent.gnss.identify import identify_configured
from agent.tls import ensure_server_identity
from agent.tpm_device import DEFAULT_LOCATION_KEY_HANDLE, TpmDevice
from geoattest.access.keys import Role
from geoattest.dev.demo_geo import AGENT_SITES, DEMO_DIR, ZONES
from geoattest.dev.fleet_keys import ensure_api_key
from geoattest.dev.ima_emulator import ImaEmulator
from geoattest.dev.procs import (
    GEOATTEST,
    ProcessSpec,
    free_port,
    free_ports,
    geoattest_env,
    http_ok,
    managed_process,
    managed_processes,
    port_accepts,
    redis_server,
)
from geoattest.dev.swtpm import SwtpmCa, SwtpmInstance
from geoattest.dev.swtpm.lockout import clear_lockout, lockout_state
from geoattest.errors import ConfigurationError
from geoattest.pcr_banks import PcrBank
from geoattest.registrar_client import RegistrarClient
from geoattest.tls_material import ensure_verifier_client_tls
from geoattest.wire import AgentView
from registrar.signing import RegistrarSigner

log = logging.getLogger(__name__)

POLICY_NAME = "local-fleet"
# Real executables of this machine, measured into every agent's log at boot (as if run).
SAMPLE_EXECUTABLES = ("/usr/bin/bash", "/usr/bin/ls", "/usr/bin/cat", "/usr/bin/env")


@dataclass(slots=True)
class AgentNode:
    agent_id: str
    swtpm: SwtpmInstance
    ima: ImaEmulator
    state_dir: Path
    url: str
    site: str  # the demo track it replays (``geoattest.dev.demo_geo``)
    track: Path  # the live replay's file: tampering rewrites it
    workload_socket: Path
    pushes: bool = False  # a push agent (ADR 19): it posts to the push listener, nobody polls it


@dataclass(slots=True)
class Fleet:
    state_dir: Path
    registrar_url: str
    verifier_url: str
    registrar_api_key: str  # admin keys of this run's operator (api-keys/operator.key)
    verifier_api_key: str
    worker_metrics_url: str
    started_at: datetime  # only rounds that ended after this belong to this run
    push_url: str  # the verifier's push listener (mTLS)
    agents: dict[str, AgentNode] = field(default_factory=dict)

    def verifier(self, method: str, path: str, **kwargs: Any) -> requests.Response:  # noqa: ANN401
        """A call to the verifier API as the fleet's operator."""
        headers = {"Authorization": f"Bearer {self.verifier_api_key}"}
        return requests.request(
            method, self.verifier_url + path, headers=headers, timeout=10, **kwargs
        )

    def verifier_get(self, path: str) -> requests.Response:
        return self.verifier("GET", path)


@contextmanager
def local_fleet(
    state_dir: Path,
    agent_ids: list[str],
    *,
    registrar_port: int,
    verifier_port: int,
    push_agents: frozenset[str] = frozenset(),
) -> Iterator[Fleet]:
    """Start every part; stop them all (in reverse) when the block ends. ``push_agents`` run
    ``agent push`` (ADR 19) instead of serving their evidence API."""
    state_dir = state_dir.resolve()
    logs = state_dir / "logs"
    started_at = datetime.now(UTC)
    with ExitStack() as stack:
        _step(1, f"TPM manufacturer CA in {state_dir / 'ca'}")
        ca = SwtpmCa.create(state_dir / "ca")
        trust_dir = _trust_store_dir(state_dir / "ek-ca", ca)
        _step(2, "redis-server")
        redis_url = stack.enter_context(redis_server(state_dir / "redis", free_port()))
        _step(3, f"registrar on 127.0.0.1:{registrar_port}")
        registrar_url = f"http://127.0.0.1:{registrar_port}"
        stack.enter_context(
            managed_process(
                "registrar",
                [
                    *GEOATTEST,
                    "registrar",
                    "serve",
                    "--ek-ca",
                    str(trust_dir),
                    "--port",
                    str(registrar_port),
                    "--db",
                    _sqlite(state_dir, "registrar"),
                    "--state-dir",
                    str(state_dir / "registrar"),
                ],
                log_path=logs / "registrar.log",
                ready=http_ok(f"{registrar_url}/v1/healthz"),
                env=geoattest_env({}),
            )
        )
        worker_metrics_port, push_port = free_ports(2)
        _step(4, f"verifier API on 127.0.0.1:{verifier_port}, Celery worker with beat "
                 f"(metrics on 127.0.0.1:{worker_metrics_port}), push listener on "
                 f"127.0.0.1:{push_port}")  # fmt: skip
        tls = ensure_verifier_client_tls(state_dir / "verifier-tls")
        registrar_db, verifier_db = _sqlite(state_dir, "registrar"), _sqlite(state_dir, "verifier")
        reader_key = ensure_api_key(state_dir, registrar_db, "verifier", Role.VIEWER)
        signing_key = state_dir / "registrar-signing-key.pem"  # what the verifier pins
        signing_key.write_text(RegistrarSigner.load(state_dir / "registrar").public_pem())
        verifier_env = geoattest_env(
            {
                "GEOATTEST_DATABASE_URL": verifier_db,
                "GEOATTEST_REDIS_URL": redis_url,
                "GEOATTEST_REGISTRAR_URL": registrar_url,
                "GEOATTEST_REGISTRAR_API_KEY": reader_key,
                "GEOATTEST_REGISTRAR_SIGNING_KEY": str(signing_key),
                "GEOATTEST_EK_CA_DIR": str(trust_dir),
                "GEOATTEST_VERIFIER_TLS_DIR": str(state_dir / "verifier-tls"),
                "GEOATTEST_VERIFIER_KEYS_DIR": str(state_dir / "verifier-keys"),
                "GEOATTEST_VERIFIER_PORT": str(verifier_port),
                "GEOATTEST_ZONES_FILE": str(DEMO_DIR / "zones.geojson"),
                "GEOATTEST_WORKER_METRICS_PORT": str(worker_metrics_port),
                "GEOATTEST_WORKER_METRICS_DIR": str(state_dir / "worker-metrics"),
                "GEOATTEST_PUSH_PORT": str(push_port),
            }
        )
        verifier_url = f"http://127.0.0.1:{verifier_port}"
        worker_log = logs / "verifier-worker.log"
        stack.enter_context(
            managed_processes(
                [
                    ProcessSpec(
                        "verifier API",
                        [*GEOATTEST, "verifier", "serve"],
                        log_path=logs / "verifier.log",
                        ready=http_ok(f"{verifier_url}/v1/healthz"),
                        env=verifier_env,
                    ),
                    ProcessSpec(
                        "verifier worker",
                        [*GEOATTEST, "verifier", "worker", "--beat", "--concurrency", "1"],
                        log_path=worker_log,
                        ready=lambda: b" ready." in worker_log.read_bytes(),
                        env=verifier_env,
                    ),
                ]
            )
        )
        stack.enter_context(  # after the API: it migrated the database this one reads
            managed_process(
                "verifier push listener",
                [*GEOATTEST, "verifier", "push-serve"],
                log_path=logs / "verifier-push.log",
                ready=lambda: port_accepts(push_port),
                env=verifier_env,
            )
        )
        fleet = Fleet(
            state_dir=state_dir,
            registrar_url=registrar_url,
            verifier_url=verifier_url,
            registrar_api_key=ensure_api_key(state_dir, registrar_db, "operator", Role.ADMIN),
            verifier_api_key=ensure_api_key(state_dir, verifier_db, "operator", Role.ADMIN),
            worker_metrics_url=f"http://127.0.0.1:{worker_metrics_port}/metrics",
            started_at=started_at,
            push_url=f"https://127.0.0.1:{push_port}",
        )
        pushing = f", {len(push_agents)} pushing evidence" if push_agents else ""
        _step(5, f"{len(agent_ids)} agent(s): swtpm, IMA log, evidence API over mTLS{pushing}")
        nodes = [
            _prepare_agent(
                stack, state_dir, ca, agent_id, site_of(index), pushes=agent_id in push_agents
            )
            for index, agent_id in enumerate(agent_ids)
        ]
        stack.enter_context(
            managed_processes([_agent_process(node, logs, tls.ca_cert, fleet) for node in nodes])
        )
        fleet.agents.update((node.agent_id, node) for node in nodes)
        _write_fleet_file(fleet)
        yield fleet


def enrol_all(fleet: Fleet) -> list[AgentView]:
    """Enrol every agent (EK chain, AK activation, API address and certificate, the location key
    and the GNSS receiver it reads, as ``agent enrol --gnss`` does); idempotent."""
    client = RegistrarClient(fleet.registrar_url)
    views = []
    try:
        for node in fleet.agents.values():
            identity = ensure_server_identity(node.state_dir, node.agent_id, "127.0.0.1")
            endpoint = ApiEndpoint(url=node.url, tls_certificate=identity.certificate_der)
            with TpmDevice(node.swtpm.tcti) as device:
                views.append(
                    enrol(
                        device,
                        client,
                        node.agent_id,
                        endpoint=_fixed(endpoint),
                        location_key_handle=DEFAULT_LOCATION_KEY_HANDLE,
                        # the replayed track unpaced: the same receiver as `serve` reads live
                        # (file source, no banner), found at once instead of after a fix's pace
                        gnss_receiver=identify_configured(f"file:{node.track}"),
                    )
                )
    finally:
        client.close()
    return views


def admit_all(fleet: Fleet) -> None:
    """Give the verifier a policy made from what the agents measured and put every agent under
    verification (an agent known from an earlier run is refreshed and re-admitted)."""
    response = fleet.verifier("PUT", f"/v1/policies/{POLICY_NAME}", json=_policy(fleet))
    response.raise_for_status()
    for agent_id, node in fleet.agents.items():
        mode = "push" if node.pushes else "pull"
        body = {"policy": POLICY_NAME, "mode": mode}
        added = fleet.verifier("POST", f"/v1/agents/{agent_id}", json=body)
        if added.status_code == 409 and _mode_of(fleet, agent_id) != mode:
            # An earlier run had it in the other mode (--push-agents changed): add it anew.
            fleet.verifier("DELETE", f"/v1/agents/{agent_id}").raise_for_status()
            added = fleet.verifier("POST", f"/v1/agents/{agent_id}", json=body)
        if added.status_code == 409:  # known from an earlier run: new address, start it over
            for action in ("refresh", "readmit", "resume"):
                fleet.verifier("POST", f"/v1/agents/{agent_id}/{action}")
        elif not added.ok:
            raise ConfigurationError(f"verifier refused {agent_id}: {added.text}")


def _mode_of(fleet: Fleet, agent_id: str) -> str | None:
    known = fleet.verifier_get(f"/v1/agents/{agent_id}")
    return str(known.json().get("mode", "pull")) if known.ok else None


def measure_on(state_dir: Path, agent_id: str, path: Path) -> str:
    """Record ``path`` as executed on a running fleet's agent (its IMA log and PCR 10), under
    its real path as IMA logs it (links resolved)."""
    fleet_file = state_dir / "fleet.json"
    if not fleet_file.is_file():
        raise ConfigurationError(f"no running fleet in {state_dir} (start 'geoattest dev fleet')")
    agents = json.loads(fleet_file.read_text())["agents"]
    if agent_id not in agents:
        raise ConfigurationError(f"no agent {agent_id!r} in the fleet ({', '.join(agents)})")
    ima = ImaEmulator(agents[agent_id]["tcti"], Path(agents[agent_id]["ima_log"]))
    real = path.resolve()  # IMA logs the file it opened: links resolved (d_path)
    entry = ima.measure(str(real), real.read_bytes())
    return entry.line


def push_agents_of(agent_ids: list[str], count: int) -> frozenset[str]:
    """The ``count`` agents that push: the last ones on an inside site, never the first agent
    (the one the quickstart fetches a token from) nor one on a zone border."""
    candidates = [
        agent_id
        for index, agent_id in enumerate(agent_ids)
        if index > 0 and site_of(index) != "border"
    ]
    return frozenset(candidates[len(candidates) - count :] if count > 0 else ())


def site_of(index: int) -> str:
    """The demo site of the fleet's ``index``-th agent: the five of ``AGENT_SITES`` (the fifth on
    a zone border), then the four inside sites again."""
    if index < len(AGENT_SITES):
        return AGENT_SITES[index]
    inside = [site for site in AGENT_SITES if site != "border"]
    return inside[(index - len(AGENT_SITES)) % len(inside)]


def demo_track(site: str) -> Path:
    return DEMO_DIR / "tracks" / f"{site}.nmea"


def _prepare_agent(
    stack: ExitStack, state_dir: Path, ca: SwtpmCa, agent_id: str, site: str, *, pushes: bool
) -> AgentNode:
    """An agent's swtpm (started), IMA log (a new boot), TLS identity and GNSS track, ready for
    its process."""
    tpm_dir = state_dir / "tpm" / agent_id
    if SwtpmInstance.is_manufactured(tpm_dir):
        swtpm = SwtpmInstance(tpm_dir)
    else:
        print(f"      manufacturing TPM for {agent_id} (EK certificate from the CA)", flush=True)
        swtpm = SwtpmInstance.setup(tpm_dir, ca)
    stack.enter_context(swtpm)
    _recover_lockout(agent_id, swtpm)
    ima = ImaEmulator(swtpm.tcti, state_dir / "ima" / f"{agent_id}.log")
    ima.new_boot()  # the swtpm just started: a new boot, a new measurement list
    ima.boot_aggregate()
    for executable in SAMPLE_EXECUTABLES:
        real = Path(executable).resolve()
        if real.is_file():
            ima.measure(str(real), real.read_bytes())
    agent_dir = state_dir / "agent" / agent_id
    ensure_server_identity(agent_dir, agent_id, "127.0.0.1", renew=True)
    track = state_dir / "gnss" / f"{agent_id}.nmea"
    track.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(demo_track(site), track)  # each run starts at its site (a teleport undone)
    socket = state_dir / "run" / f"{agent_id}.sock"
    socket.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return AgentNode(
        agent_id=agent_id,
        swtpm=swtpm,
        ima=ima,
        state_dir=agent_dir,
        url=f"https://127.0.0.1:{free_port()}",
        site=site,
        track=track,
        workload_socket=socket,
        pushes=pushes,
    )


def _agent_process(node: AgentNode, logs: Path, client_ca: Path, fleet: Fleet) -> ProcessSpec:
    port = int(node.url.rsplit(":", 1)[1])
    # fmt: off
    common = ["--tcti", node.swtpm.tcti, "--agent-id", node.agent_id, "--host", "127.0.0.1",
              "--ima-log", str(node.ima.log_path), "--verifier-ca", str(client_ca),
              "--state-dir", str(node.state_dir), "--gnss", f"file:{node.track}?live",
              "--verifier", fleet.verifier_url, "--workload-socket", str(node.workload_socket)]
    # fmt: on
    log_path = logs / f"agent-{node.agent_id}.log"
    if node.pushes:  # nobody connects to it: ready once its first post went out
        return ProcessSpec(
            f"agent {node.agent_id} (push)",
            [*GEOATTEST, "agent", "push", *common, "--push-url", fleet.push_url],
            log_path=log_path,
            ready=lambda: b"pushing evidence" in log_path.read_bytes(),
            env=geoattest_env({}),
        )
    return ProcessSpec(
        f"agent {node.agent_id}",
        [*GEOATTEST, "agent", "serve", *common, "--port", str(port)],
        log_path=log_path,
        ready=lambda: port_accepts(port),
        env=geoattest_env({}),
    )


def _recover_lockout(agent_id: str, swtpm: SwtpmInstance) -> None:
    """Reset the DA counter of a dev TPM that earlier power cuts (a killed fleet) left counting
    or locked, so enrolment and quotes can use the AK again."""
    state = lockout_state(swtpm.tcti)
    if state.failed_tries == 0 and not state.in_lockout:
        return
    what = "in DA lockout" if state.in_lockout else "counting toward DA lockout"
    clear_lockout(swtpm.tcti)
    text = (
        f"{agent_id}: TPM was {what} ({state.failed_tries} of {state.max_tries} failures, from "
        "unorderly shutdowns); reset it with the dev TPM's lockout auth"
    )
    log.warning("%s", text)
    print(f"      {text}", flush=True)


def _policy(fleet: Fleet) -> dict[str, object]:
    digests: dict[str, set[str]] = {}
    for node in fleet.agents.values():
        for line in node.ima.lines():
            _, _, _, digest, path = line.split(" ", 4)
            digests.setdefault(path, set()).add(digest)
    first = next(iter(fleet.agents.values()))
    with TpmDevice(first.swtpm.tcti) as device:
        boot = device.pcr_read({PcrBank.SHA256: list(range(8))})[PcrBank.SHA256]
    return {
        "boot_pcrs": {"sha256": {str(index): value.hex() for index, value in boot.items()}},
        "ima_banks": ["sha256"],
        "runtime_policy": {
            "version": 1,
            "meta": {"generated_by": "geoattest dev fleet"},
            "digests": {path: sorted(values) for path, values in digests.items()},
        },
        # The demo receivers replay files: a policy for them must accept that source kind.
        "location": {"zones": sorted(ZONES), "thresholds": {"accepted_sources": ["file"]}},
    }


def _fixed(endpoint: ApiEndpoint) -> Callable[[str], ApiEndpoint]:
    return lambda _agent_id: endpoint


def _write_fleet_file(fleet: Fleet) -> None:
    body = {
        "registrar_url": fleet.registrar_url,
        "verifier_url": fleet.verifier_url,
        "agents": {
            agent_id: {
                "tcti": node.swtpm.tcti,
                "ima_log": str(node.ima.log_path),
                "url": node.url,
                "mode": "push" if node.pushes else "pull",
                "site": node.site,
                "track": str(node.track),
                "workload_socket": str(node.workload_socket),
            }
            for agent_id, node in fleet.agents.items()
        },
    }
    (fleet.state_dir / "fleet.json").write_text(json.dumps(body, indent=2))


def _trust_store_dir(directory: Path, ca: SwtpmCa) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for cert in ca.trust_store:
        shutil.copyfile(cert, directory / cert.name)
    return directory


def _sqlite(state_dir: Path, name: str) -> str:
    return f"sqlite:///{state_dir / f'{name}.sqlite'}"


def _step(number: int, text: str) -> None:
    print(f"[{number}/5] {text}", flush=True)
