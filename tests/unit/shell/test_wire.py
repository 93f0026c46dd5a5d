from __future__ import annotations

import base64
import json

import pytest
from pydantic import ValidationError

from geoattest.wire import (
    ActivateRequest,
    EnrolRequest,
    ImaWire,
    PolicyDocument,
    activation_proof,
    enrolment_digest,
)


def _enrol_body(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "agent_id": "edge-01",
        "ek_certificate": base64.b64encode(b"cert").decode(),
        "ek_public": base64.b64encode(b"ek").decode(),
        "ak_public": base64.b64encode(b"ak").decode(),
    }
    body.update(changes)
    return body


def test_enrol_request_decodes_base64_and_round_trips() -> None:
    request = EnrolRequest.model_validate(_enrol_body())
    assert request.ek_certificate == b"cert"
    assert EnrolRequest.model_validate(request.model_dump(mode="json")) == request


@pytest.mark.parametrize(
    "changes",
    [
        {"agent_id": "has space"},
        {"agent_id": "a" * 65},
        {"ek_certificate": "not base64!"},
        {"ak_public": 42},
        {"ek_certificate": base64.b64encode(b"x" * 20000).decode()},
    ],
)
def test_enrol_request_rejects_bad_fields(changes: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        EnrolRequest.model_validate(_enrol_body(**changes))


def test_peers_ignore_fields_they_do_not_know() -> None:
    """A newer peer's optional field must not break an older one (issue 8: version skew)."""
    request = EnrolRequest.model_validate(_enrol_body(added_in_a_later_version="value"))
    assert request == EnrolRequest.model_validate(_enrol_body())


def test_operator_input_refuses_fields_it_does_not_know() -> None:
    """An operator's policy setting the verifier does not know must not be silently dropped."""
    with pytest.raises(ValidationError, match="max_age_secs"):
        PolicyDocument.model_validate({"max_age_secs": 30})


def test_enrol_request_requires_every_field() -> None:
    body = _enrol_body()
    del body["ak_public"]
    with pytest.raises(ValidationError, match="ak_public"):
        EnrolRequest.model_validate(body)


def test_activation_proof_binds_secret_and_the_whole_request() -> None:
    request = EnrolRequest.model_validate(_enrol_body())
    digest = enrolment_digest(request)
    proof = activation_proof(b"s" * 32, digest)
    assert len(proof) == 32
    assert proof != activation_proof(b"t" * 32, digest)
    for change in ({"agent_id": "edge-02"}, {"agent_url": "https://evil.example:9002"}):
        altered = EnrolRequest.model_validate(_enrol_body(**change))
        assert proof != activation_proof(b"s" * 32, enrolment_digest(altered))
    ActivateRequest(proof=proof.hex())
    with pytest.raises(ValidationError):
        ActivateRequest(proof=proof.hex().upper())


def test_enrolment_digest_survives_the_wire() -> None:
    """The agent hashes its own object, the registrar what it parsed: the same digest."""
    request = EnrolRequest.model_validate(_enrol_body(agent_url="https://10.0.0.7:9002"))
    parsed = EnrolRequest.model_validate_json(request.model_dump_json())
    assert enrolment_digest(parsed) == enrolment_digest(request)


def test_ima_entries_travel_byte_for_byte() -> None:
    entries = [b"10 aa ima-ng sha256:bb /tmp/caf\xe9", b"10 aa ima-ng sha256:bb /tmp/a\nb\\c", b""]
    wire = ImaWire.from_entries(7, entries)
    assert wire.lines[0] == "10 aa ima-ng sha256:bb /tmp/caf\\xe9"  # a readable stand-in
    assert wire.lines[1] == "10 aa ima-ng sha256:bb /tmp/a\nb\\c"  # UTF-8 travels as text
    assert set(wire.raw_lines or {}) == {"0"}
    again = ImaWire.model_validate_json(wire.model_dump_json(exclude_none=True))
    assert again.entries() == entries
    assert again.offset == 7


def test_all_utf8_entries_send_no_raw_lines_field() -> None:
    """A peer from before ``raw_lines`` gets exactly the message it knew."""
    wire = ImaWire.from_entries(0, [b"10 aa ima-ng sha256:bb /usr/bin/\xc3\xa9"])
    assert json.loads(wire.model_dump_json(exclude_none=True)) == {
        "offset": 0,
        "lines": ["10 aa ima-ng sha256:bb /usr/bin/\u00e9"],
    }
    old = ImaWire.model_validate_json('{"offset": 0, "lines": ["x"]}')
    assert old.entries() == [b"x"]


@pytest.mark.parametrize(
    "raw",
    [{"1": "eA=="}, {"01": "eA=="}, {"-1": "eA=="}, {"0": "not base64!"}],
    ids=["past-the-lines", "leading-zero", "negative", "bad-base64"],
)
def test_raw_lines_must_name_a_line_and_be_base64(raw: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        ImaWire.model_validate_json(json.dumps({"offset": 0, "lines": ["x"], "raw_lines": raw}))
