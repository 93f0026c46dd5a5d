"""``agent.evidence.collect_evidence`` with location: the agent's own code over the software TPM
(``AgentSimulator``), checked with the pure ``tpm`` functions a verifier uses."""

from __future__ import annotations

import os

import pytest

import tpm
from agent.gnss import FileReplaySource, GpsdSource, SerialSource
from agent.location import LocationProvider
from geoattest.errors import ConfigurationError, GnssUnavailable, NonceMismatch
from geoattest.pcr_banks import PcrBank
from geoattest.wire import (
    EvidenceRequest,
    EvidenceResponse,
    location_key_qualifying_data,
    quote_qualifying_data,
)
from geofence import SourceKind, decode_evidence
from geofence.nmea import split_lines
from tests.paths import vector
from tests.support.agent_simulator import AgentSimulator
from tests.support.software_pki import make_ca
from tpm import Alg

PCRS = {PcrBank.SHA256: [0, 7, 10]}


@pytest.fixture
def sim() -> AgentSimulator:
    return AgentSimulator("sim-geo", make_ca())


def _fed(lines: list[bytes]) -> LocationProvider:
    provider = LocationProvider(None, None, wait_for_fix_s=0.0, source_kind=SourceKind.SERIAL)
    for line in lines:
        provider.feed(line)
    return provider


def _quote(sim: AgentSimulator, answer: EvidenceResponse, extra_data: bytes) -> None:
    values = {
        Alg.SHA256: {int(i): bytes.fromhex(v) for i, v in answer.pcrs[PcrBank.SHA256].items()}
    }
    tpm.verify_quote(
        ak=sim.tpm.ak,
        attest=answer.quote.attest,
        signature=answer.quote.signature,
        nonce=extra_data,
        pcr_values=values,
    )


def test_location_is_signed_by_the_certified_key_and_bound_to_the_quote(
    sim: AgentSimulator,
) -> None:
    wire = sim.location_key()
    key = tpm.parse_tpm2b_public(wire.public)
    tpm.check_location_key_attributes(key)
    tpm.verify_certify(
        signer=sim.tpm.ak,
        attest=wire.certify_attest,
        signature=wire.certify_signature,
        certified=key,
        qualifying_data=location_key_qualifying_data(sim.agent_id, sim.tpm.ak.name),
    )
    sim.location = _fed(split_lines(vector("nmea/nl2008u.log").read_bytes()))
    nonce = os.urandom(32)
    answer = sim.respond(EvidenceRequest(nonce=nonce.hex(), pcrs=PCRS, include_location=True))
    assert answer.location is not None
    assert answer.location_signature is not None
    signature = tpm.parse_tpmt_signature(answer.location_signature)
    tpm.verify_signature(key, answer.location, signature)
    assert decode_evidence(answer.location).nonce == nonce
    _quote(sim, answer, quote_qualifying_data(nonce, answer.location))
    with pytest.raises(NonceMismatch):
        _quote(sim, answer, quote_qualifying_data(nonce, None))


def test_without_include_location_nothing_is_signed(sim: AgentSimulator) -> None:
    sim.location_key()
    sim.location = _fed(split_lines(vector("nmea/nl2008u.log").read_bytes()))
    nonce = os.urandom(32)
    answer = sim.respond(EvidenceRequest(nonce=nonce.hex(), pcrs=PCRS))
    assert (answer.location, answer.location_signature) == (None, None)
    _quote(sim, answer, quote_qualifying_data(nonce, None))
    later = sim.respond(EvidenceRequest(nonce=nonce.hex(), pcrs=PCRS, include_location=True))
    assert later.location is not None  # the fix was not used up by the plain round


def test_location_asked_of_an_agent_without_a_source(sim: AgentSimulator) -> None:
    request = EvidenceRequest(nonce=os.urandom(32).hex(), pcrs=PCRS, include_location=True)
    with pytest.raises(GnssUnavailable, match="no location source"):
        sim.respond(request)
    status, body = sim.answer(request.model_dump_json().encode())
    assert status == 503
    assert b"gnss_unavailable" in body


def test_no_fix_yet_is_gnss_unavailable(sim: AgentSimulator) -> None:
    sim.location_key()
    sim.location = _fed([])
    request = EvidenceRequest(nonce=os.urandom(32).hex(), pcrs=PCRS, include_location=True)
    with pytest.raises(GnssUnavailable, match="no GNSS fix yet"):
        sim.respond(request)


def test_evidence_says_its_source_kind_and_vertical_accuracy(sim: AgentSimulator) -> None:
    sim.location_key()
    capture = vector("nmea/nl2008u.log")
    replay = LocationProvider(FileReplaySource(capture), None, wait_for_fix_s=0.0)
    assert replay.source_kind is SourceKind.FILE  # from the source itself
    for line in split_lines(capture.read_bytes()):
        replay.feed(line)
    sim.location = replay
    nonce = os.urandom(32)
    answer = sim.respond(EvidenceRequest(nonce=nonce.hex(), pcrs=PCRS, include_location=True))
    assert answer.location is not None
    evidence = decode_evidence(answer.location)
    assert (evidence.version, evidence.source) == (3, "file")
    latest = replay.track()[-1]
    assert latest.vertical_accuracy_m is not None
    assert evidence.vertical_accuracy_m == round(latest.vertical_accuracy_m, 3)


def test_a_provider_fed_by_hand_must_say_what_it_is_fed_from() -> None:
    with pytest.raises(ConfigurationError, match="needs its source_kind"):
        LocationProvider(None, None)
    assert SerialSource.kind is SourceKind.SERIAL
    assert GpsdSource.kind is SourceKind.GPSD
