from __future__ import annotations

import base64
import hashlib
import json

import pytest
from pydantic import ValidationError

from geoattest.wire import (
    ActivateRequest,
    AgentView,
    CredentialChallengeWire,
    EnrolRequest,
    EnrolResponse,
    ImaWire,
    PolicyDocument,
    activation_proof,
    enrolment_body,
    enrolment_digest,
    is_agent_id,
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
        {"agent_id": ".."},
        {"agent_id": "édge"},
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


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("edge-01", True),
        ("ek-0123456789abcdef", True),
        ("a" * 64, True),
        ("N0de_7.fra", True),
        ("a" * 65, False),
        ("", False),
        (".", False),
        ("..", False),
        (".hidden", False),
        ("-rf", False),
        ("edge-1?shadow", False),
        ("edge-1/shadow", False),
        ("edge-1\n", False),  # re's "$" would let a trailing newline through
        ("édge", False),
        ("edge\u0661", False),  # an Arabic-Indic digit: str.isdigit, not ASCII
    ],
)
def test_one_agent_id_rule(value: str, valid: bool) -> None:
    assert is_agent_id(value) is valid
    try:
        EnrolRequest.model_validate(_enrol_body(agent_id=value))
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted is valid


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (EnrolRequest, _enrol_body()),
        (ActivateRequest, {"proof": "ab" * 32}),
        (
            EnrolResponse,
            {
                "agent_id": "edge-01",
                "state": "pending",
                "challenge": {
                    "credential_blob": "AA==",
                    "encrypted_secret": "AA==",
                    "expires_at": "2026-12-01T10:00:00Z",
                },
            },
        ),
    ],
)
def test_enrolment_messages_ignore_fields_of_newer_peers(
    model: type[EnrolRequest | ActivateRequest | EnrolResponse], body: dict[str, object]
) -> None:
    newer = {**body, "added_in_v9": {"anything": [1, 2]}}
    assert model.model_validate(newer) == model.model_validate(body)


def test_senders_omit_fields_at_their_default() -> None:
    request = EnrolRequest.model_validate(_enrol_body())
    assert set(enrolment_body(request)) == {"agent_id", "ek_certificate", "ek_public", "ak_public"}
    with_url = EnrolRequest.model_validate(_enrol_body(agent_url="https://10.0.0.7:9002"))
    assert enrolment_body(with_url)["agent_url"] == "https://10.0.0.7:9002"


def test_agent_view_of_an_older_registrar_without_optional_fields_parses() -> None:
    older = {
        "agent_id": "edge-01",
        "state": "active",
        "ek_fingerprint": "ab" * 32,
        "ek_certificate": "AA==",
        "ek_public": "AA==",
        "ak_public": None,
        "ak_name": None,
        "ek_anchor_subject": "CN=root",
        "ek_anchor_fingerprint": "cd" * 32,
        "tpm_manufacturer": None,
        "tpm_model": None,
        "purchase_order": None,
        "asset_tag": None,
        "enrolled_at": "2026-12-01T10:00:00Z",
        "activated_at": None,
    }
    assert AgentView.model_validate(older).agent_url is None
    assert CredentialChallengeWire.model_config.get("extra") == "ignore"


# --- the enrolment digest: RFC 8785 canonical JSON of the object as sent -----------------------

# A request as an agent of some later version might send it: unknown field, odd whitespace, key
# order, number forms (1e2, -0), a non-ASCII string and a control character.
KAT_REQUEST_JSON = """
{ "zz_future": {"path": "/tmp/a\\nb", "note": "Z\\u00fcrich \u20ac", "b": [1e2, 0.5, true, null],
                "a": -0},
  "location_key": {"public": "bGstcHVi", "certify_signature": "bGstc2ln",
                   "certify_attest": "bGstYXR0ZXN0"},
  "ek_public": "ZWstcHVi", "ek_certificate": "ZWstY2VydA==", "ak_public": "YWstcHVi",
  "agent_url": "https://10.0.0.7:9002", "agent_id": "edge-fra-017" }
"""
# Written by hand from RFC 8785 (keys sorted by UTF-16 code units, no whitespace, shortest
# numbers, UTF-8 strings with only the mandatory escapes).
KAT_CANONICAL = (
    '{"agent_id":"edge-fra-017","agent_url":"https://10.0.0.7:9002","ak_public":"YWstcHVi",'
    '"ek_certificate":"ZWstY2VydA==","ek_public":"ZWstcHVi","location_key":{"certify_attest":'
    '"bGstYXR0ZXN0","certify_signature":"bGstc2ln","public":"bGstcHVi"},"zz_future":{"a":0,'
    '"b":[100,0.5,true,null],"note":"Zürich €","path":"/tmp/a\\nb"}}'
)
# Computed outside Python: printf 'geoattest-enrolment-v1\0%s' "$canonical" | sha256sum
KAT_DIGEST = "f0eaa30f048e6a3246c03a7cfbbbdadc71db1d66cd7711bc01fceb456963f7a2"
# (printf 'geoattest-activate-v3\0'; echo -n $KAT_DIGEST | xxd -r -p) |
#   openssl dgst -sha256 -mac HMAC -macopt hexkey:000102…1f
KAT_PROOF = "c937b78c676338093069379ba5eab92c0845668f9123315fc97e1c587fada114"


def test_known_answer_vector_is_self_consistent() -> None:
    digest = hashlib.sha256(b"geoattest-enrolment-v1\x00" + KAT_CANONICAL.encode()).hexdigest()
    assert digest == KAT_DIGEST


def test_enrolment_digest_known_answer() -> None:
    assert enrolment_digest(json.loads(KAT_REQUEST_JSON)).hex() == KAT_DIGEST


def test_activation_proof_known_answer() -> None:
    proof = activation_proof(bytes(range(32)), bytes.fromhex(KAT_DIGEST))
    assert proof.hex() == KAT_PROOF


def test_digest_covers_fields_the_receiver_does_not_know() -> None:
    """A registrar that ignores ``zz_future`` still binds it: altering it fails activation."""
    sent = json.loads(KAT_REQUEST_JSON)
    altered = {**sent, "zz_future": {**sent["zz_future"], "a": 1}}
    assert enrolment_digest(altered) != enrolment_digest(sent)
    understood = enrolment_body(EnrolRequest.model_validate(sent))
    assert "zz_future" not in understood
    assert enrolment_digest(understood) != enrolment_digest(sent)


def test_digest_does_not_depend_on_the_rendering() -> None:
    body = json.loads(KAT_REQUEST_JSON)
    for rendering in (json.dumps(body), json.dumps(body, indent=4, sort_keys=True)):
        assert enrolment_digest(json.loads(rendering)).hex() == KAT_DIGEST


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 2**60, "lone \ud800 surrogate"])
def test_values_without_a_canonical_form_are_refused(value: float | str) -> None:
    with pytest.raises(ValueError, match=r"."):
        enrolment_digest({"agent_id": "edge-01", "x": value})


def test_activation_proof_binds_secret_and_the_whole_request() -> None:
    request = EnrolRequest.model_validate(_enrol_body())
    digest = enrolment_digest(enrolment_body(request))
    proof = activation_proof(b"s" * 32, digest)
    assert len(proof) == 32
    assert proof != activation_proof(b"t" * 32, digest)
    for change in ({"agent_id": "edge-02"}, {"agent_url": "https://evil.example:9002"}):
        altered = EnrolRequest.model_validate(_enrol_body(**change))
        assert proof != activation_proof(b"s" * 32, enrolment_digest(enrolment_body(altered)))
    ActivateRequest(proof=proof.hex())
    with pytest.raises(ValidationError):
        ActivateRequest(proof=proof.hex().upper())


def test_enrolment_digest_survives_the_wire() -> None:
    """The agent hashes the object it sends, the registrar the object it parsed: the same."""
    request = EnrolRequest.model_validate(_enrol_body(agent_url="https://10.0.0.7:9002"))
    sent = enrolment_body(request)
    received = json.loads(json.dumps(sent))
    assert enrolment_digest(received) == enrolment_digest(sent)


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
