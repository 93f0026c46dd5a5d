"""An agent's answer naming a PCR bank the verifier does not know is a protocol fault (the agent
speaks another version), never an integrity failure: nothing about the platform was shown wrong."""

from __future__ import annotations

import json

import pytest

from geoattest.errors import AgentProtocolMismatch, IntegrityError, ReachabilityError
from geoattest.pcr_banks import PcrBank
from verifier.engine.fetch import evidence_from_answer


def _answer(bank: str) -> bytes:
    return json.dumps(
        {
            "quote": {"attest": "AA==", "signature": "AA=="},
            "pcrs": {bank: {"10": "00" * 32}},
            "ima": {"offset": 0, "lines": []},
        }
    ).encode()


def test_a_known_bank_parses_into_the_bank_type() -> None:
    answer = evidence_from_answer("https://a:1", 200, _answer("sha256"), asked_location=False)
    assert list(answer.pcrs) == [PcrBank.SHA256]


@pytest.mark.parametrize("bank", ["sha3_256", "SHA256", "md5"])
def test_an_unknown_bank_in_an_answer_is_a_protocol_mismatch(bank: str) -> None:
    with pytest.raises(AgentProtocolMismatch, match="unknown PCR bank") as caught:
        evidence_from_answer("https://a:1", 200, _answer(bank), asked_location=False)
    assert isinstance(caught.value, ReachabilityError)
    assert not isinstance(caught.value, IntegrityError)
