"""geoattest.pcr_banks and the wire edge: one bank type, the same strings on the wire, and an
unknown bank refused where it enters with its own code."""

from __future__ import annotations

import hashlib
import json

import pytest

from geoattest.errors import MalformedRequest, PcrBankUnknown, TpmFormatError
from geoattest.http import validate_json
from geoattest.pcr_banks import BANK_DIGEST_SIZES, PcrBank, parse_bank, parse_banks
from geoattest.wire import EvidenceRequest, EvidenceResponse, PolicyDocument
from geoattest.wire_tokens import TokenSessionRequest
from tests.support import wire_v1
from tpm import Alg, alg_bank, bank_alg


def test_every_bank_has_its_hash_digest_size_and_tpm_algorithm() -> None:
    assert set(BANK_DIGEST_SIZES) == set(PcrBank)
    for bank in PcrBank:
        assert bank.digest_size == hashlib.new(bank).digest_size
        assert alg_bank(bank_alg(bank)) is bank
    assert bank_alg(PcrBank.SHA256) is Alg.SHA256


def test_a_hash_that_is_no_bank_of_ours_is_a_tpm_format_error() -> None:
    with pytest.raises(TpmFormatError, match="not a PCR bank"):
        alg_bank(Alg.SHA3_256)


@pytest.mark.parametrize("name", ["md5", "SHA256", "sha256 ", "", "sm3_256", 256, None])
def test_parse_bank_refuses_anything_but_an_exact_bank_name(name: object) -> None:
    with pytest.raises(PcrBankUnknown, match="unknown PCR bank") as caught:
        parse_bank(name, where="ima_banks")
    assert caught.value.code == "pcr_bank_unknown"
    assert caught.value.http_status == 400
    assert isinstance(caught.value, MalformedRequest)  # a bad request, never an integrity fault
    assert "ima_banks" in caught.value.message


def test_parse_bank_returns_the_enum_member() -> None:
    assert parse_bank("sha1") is PcrBank.SHA1
    assert parse_bank(PcrBank.SHA384) is PcrBank.SHA384
    assert parse_banks(["sha256", "sha1"]) == (PcrBank.SHA256, PcrBank.SHA1)


def test_wire_models_carry_the_enum_inside_and_the_same_strings_outside() -> None:
    request = EvidenceRequest.model_validate({"nonce": "ab" * 16, "pcrs": {"sha256": [0, 10]}})
    (bank,) = request.pcrs
    assert bank is PcrBank.SHA256
    dumped = json.loads(request.model_dump_json(exclude_defaults=True))
    assert dumped == {"nonce": "ab" * 16, "pcrs": {"sha256": [0, 10]}}
    # protocol v1 reads what today's verifier sends, and today's reads what v1 sent
    old = wire_v1.EvidenceRequest.model_validate_json(request.model_dump_json())
    assert old.pcrs == {"sha256": [0, 10]}
    assert EvidenceRequest.model_validate_json(old.model_dump_json()).pcrs == request.pcrs


def test_policy_defaults_and_dumps_keep_the_bank_names() -> None:
    document = PolicyDocument.model_validate({"boot_pcrs": {"sha1": {"0": "00" * 20}}})
    assert document.ima_banks == [PcrBank.SHA256]
    assert next(iter(document.boot_pcrs)) is PcrBank.SHA1
    dumped = document.model_dump(mode="json")
    assert dumped["ima_banks"] == ["sha256"]
    assert list(dumped["boot_pcrs"]) == ["sha1"]


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (EvidenceRequest, {"nonce": "ab" * 16, "pcrs": {"md5": [10]}}),
        (PolicyDocument, {"ima_banks": ["sha256", "md4"]}),
        (PolicyDocument, {"boot_pcrs": {"SHA256": {"0": "00" * 32}}}),
        (
            EvidenceResponse,
            {
                "quote": {"attest": "AA==", "signature": "AA=="},
                "pcrs": {"sha3_256": {"10": "00" * 32}},
                "ima": {"offset": 0, "lines": []},
            },
        ),
    ],
    ids=["quote-request", "ima-banks", "boot-pcrs", "evidence"],
)
def test_an_unknown_bank_at_the_edge_is_pcr_bank_unknown(model: type, body: object) -> None:
    with pytest.raises(PcrBankUnknown, match="unknown PCR bank") as caught:
        validate_json(model, body)
    assert caught.value.to_dict()["error"]["code"] == "pcr_bank_unknown"


def test_the_bank_code_wins_over_other_problems_of_the_same_body() -> None:
    body = {"nonce": "zz", "pcrs": {"md5": [10]}}  # a bad nonce as well, reported first
    with pytest.raises(PcrBankUnknown, match="pcrs"):
        validate_json(EvidenceRequest, body)


def test_other_problems_stay_malformed_request() -> None:
    with pytest.raises(MalformedRequest) as caught:
        validate_json(EvidenceRequest, {"nonce": "ab" * 16, "pcrs": {"sha256": [24]}})
    assert caught.value.code == "malformed_request"


def test_a_token_session_with_an_unknown_bank_is_refused_alike() -> None:
    body = {
        "agent_id": "edge-1",
        "challenge": "ab" * 32,
        "public_jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
        "quote": {"attest": "AA==", "signature": "AA=="},
        "pcrs": {"md5": {"0": "00" * 20}},
    }
    with pytest.raises(PcrBankUnknown):
        validate_json(TokenSessionRequest, body)
