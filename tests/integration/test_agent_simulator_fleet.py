"""The simulated fleet the benchmarks and engine tests use: the same evidence protocol over mTLS
from software TPMs on one port, enrolled with a registrar as real agents are."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import tpm
from geoattest.wire import EvidenceRequest, EvidenceResponse
from tests.support.agent_simulator import make_simulators
from tests.support.evidence_agent import (
    PCRS,
    verify_evidence,
)
from tests.support.fleet_server import enrol_fleet, fleet_tls, serve_fleet
from tests.support.registrar_server import RunningRegistrar, running_registrar
from tests.support.software_pki import SoftwareCa, make_ca

pytestmark = pytest.mark.swtpm


@pytest.fixture
def software_ca() -> SoftwareCa:
    return make_ca()


@pytest.fixture
def sim_registrar(tmp_path: Path, software_ca: SoftwareCa) -> Iterator[RunningRegistrar]:
    trust = tmp_path / "ek-ca"
    trust.mkdir()
    (trust / "sim-root.pem").write_bytes(software_ca.pem)
    with running_registrar(tmp_path, trust) as running:
        yield running


def test_fleet_enrols_and_serves_verifiable_evidence_over_mtls(
    tmp_path: Path, software_ca: SoftwareCa, sim_registrar: RunningRegistrar
) -> None:
    sims = make_simulators(3, software_ca)
    tls = fleet_tls(tmp_path / "fleet-tls")
    with serve_fleet(sims, ssl_context=tls.server_context) as fleet:
        views = enrol_fleet(sim_registrar.url, sims, fleet)
        assert [v.state for v in views] == ["active"] * 3
        with requests.Session() as session:
            session.trust_env = False
            session.verify = str(tls.server_cert)
            session.cert = (str(tls.client.client_cert), str(tls.client.client_key))
            for sim, view in zip(sims, views, strict=True):
                nonce = os.urandom(20)
                body = EvidenceRequest(nonce=nonce.hex(), pcrs=PCRS).model_dump()
                url = fleet.agent_url(sim.agent_id) + "/v1/evidence"
                answer = session.post(url, json=body, timeout=10)
                assert answer.status_code == 200, answer.text
                evidence = EvidenceResponse.model_validate_json(answer.content)
                assert view.ak_public is not None
                ak = tpm.parse_tpm2b_public(view.ak_public)
                verify_evidence(ak, nonce, evidence)
            unknown = session.post(fleet.agent_url("nobody") + "/v1/evidence", json={}, timeout=10)
            assert unknown.status_code == 404
            fleet.offline.add(sims[0].agent_id)
            with pytest.raises(requests.exceptions.ConnectionError):
                session.post(
                    fleet.agent_url(sims[0].agent_id) + "/v1/evidence", json=body, timeout=10
                )
        with pytest.raises(requests.exceptions.ConnectionError):  # no client certificate
            requests.get(
                fleet.agent_url(sims[1].agent_id) + "/v1/healthz",
                verify=str(tls.server_cert),
                timeout=10,
            )


def test_fleet_registers_its_path_routed_urls_and_pin(
    tmp_path: Path, software_ca: SoftwareCa, sim_registrar: RunningRegistrar
) -> None:
    sims = make_simulators(2, software_ca)
    tls = fleet_tls(tmp_path / "fleet-tls")
    with serve_fleet(sims, ssl_context=tls.server_context) as fleet:
        views = enrol_fleet(
            sim_registrar.url, sims, fleet, tls_certificate=tls.server_certificate_der
        )
    for sim, view in zip(sims, views, strict=True):
        assert view.agent_url == f"{fleet.base_url}/agents/{sim.agent_id}"
        assert view.tls_certificate == tls.server_certificate_der
