"""The token service over real parts: the verifier's Flask app served over HTTP on loopback, a
real redis-server and SQLite file, and rounds run by the production ``RoundRunner`` over
``AgentSimulator``s (``tests.support.runner_stack``), whose software TPMs also quote the agents'
token sessions. Fresh rounds in the API run through the same simulators.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from flask import Flask

from agent.tpm_device import DEFAULT_AK_HANDLE, TpmQuote
from agent.workload.verifier_client import TokenRequest, VerifierTokenClient
from geoattest.access.keys import Role
from geoattest.pcr_banks import PcrBank
from geoattest.settings import Settings, load_settings
from tests.support.access import issue_api_key
from tests.support.agent_simulator import AgentSimulator
from tests.support.identity_trust import unused_identity_trust
from tests.support.runner_stack import RunnerStack, runner_stack
from tests.support.served_app import served
from verifier.app import close_app, create_app
from verifier.tokens.verify import TrustedKeys

__all__ = ["SimQuoter", "TokenStack", "token_stack"]


@dataclass
class SimQuoter:
    """An agent's session quotes, from its simulator's software TPM."""

    sim: AgentSimulator
    quotes: int = 0

    def quote(self, nonce: bytes, pcrs: Mapping[PcrBank, Sequence[int]]) -> TpmQuote:
        self.quotes += 1
        return self.sim.tpm.quote(nonce, pcrs, ak_handle=DEFAULT_AK_HANDLE)


@dataclass
class TokenStack:
    runner: RunnerStack
    url: str
    app: Flask
    settings: Settings
    admin_key: str

    def client(self, agent_id: str) -> VerifierTokenClient:
        return VerifierTokenClient(self.url, agent_id, SimQuoter(self.runner.sims[agent_id]))

    def attest(self, agent_id: str, rounds: int = 1) -> None:
        for _ in range(rounds):
            report = self.runner.round(agent_id)
            assert report is not None
            assert report.committed is not None, report.fault

    def keys(self) -> TrustedKeys:
        return TrustedKeys.from_jwks(
            requests.get(f"{self.url}/.well-known/jwks.json", timeout=5).content
        )

    def status(self) -> str:
        return requests.get(f"{self.url}/v1/tokens/status", timeout=5).text


def order(agent: AgentSimulator, **fields: Any) -> TokenRequest:  # noqa: ANN401  # any field
    """A token request for /usr/bin/bash (which the simulators' policy allows) by default."""
    import hashlib

    values: dict[str, Any] = {
        "workload_sha256": hashlib.sha256(b"bash").digest(),
        "workload_path": None,
        "type": "por",
        "audience": "svc",
    }
    values.update(fields)
    return TokenRequest(**values)


@contextmanager
def token_stack(
    workdir: Path,
    redis_url: str,
    *,
    agents: int = 2,
    **settings: Any,  # noqa: ANN401
) -> Iterator[TokenStack]:
    with runner_stack(workdir, redis_url, agents=agents, publish_events=True) as runner:
        config = load_settings(
            database_url=f"sqlite:///{runner.database}",
            redis_url=redis_url,
            registrar_url="http://127.0.0.1:9",
            verifier_keys_dir=workdir / "keys",
            verifier_tls_dir=workdir / "verifier-tls",
            round_interval_seconds=0.2,
            token_issuer="https://verifier.test",  # noqa: S106  # an issuer, not a secret
            **unused_identity_trust(workdir),
            **settings,
        )
        app = create_app(config, evidence_source=runner.source)
        try:
            with served(app, "verifier-api") as url:
                yield TokenStack(
                    runner=runner,
                    url=url,
                    app=app,
                    settings=config,
                    admin_key=issue_api_key(config.database_url, Role.ADMIN),
                )
        finally:
            close_app(app)
