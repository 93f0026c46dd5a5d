"""Boot event log replay in ``verify_round``: a node whose PCRs 0-7 are what its firmware log
says passes; a log edited after boot, a PCR extended without a log event, a missing or a
malformed log each fail with their own reason code."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pytest

from allowlists.boot import BootPolicy
from geoattest.pcr_banks import PcrBank
from geoattest.wire import (
    EvidenceResponse,
    ImaWire,
    PolicyDocument,
    QuoteWire,
    quote_qualifying_data,
)
from tests.paths import vector
from tests.support.software_tpm import SoftwareAk
from tpm import Alg, EventLog, encode_event_log, parse_event_log, replay_event_log
from verifier.core.evidence import parse_evidence
from verifier.core.policy import AttestationPolicy, policy_from_document
from verifier.core.round import verify_round
from verifier.core.round_types import RoundEvidence, RoundMemory, RoundResult
from verifier.core.states import Outcome

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
AGILE = vector("keylime/uefi_eventlog/binary_bios_measurements").read_bytes()
SECUREBOOT = vector("keylime/uefi_eventlog/binary_bios_measurements-secureboot").read_bytes()
BANKS = {PcrBank.SHA1: Alg.SHA1, PcrBank.SHA256: Alg.SHA256}
BOOT_PCRS = range(8)


@dataclass
class BootedNode:
    """A node whose TPM booted through ``log``: its PCRs are the log's replay, as firmware that
    measures honestly leaves them. ``boot_log`` is what it sends (edit it to lie)."""

    log: bytes
    ak: SoftwareAk = field(default_factory=SoftwareAk.ecc)
    pcrs: dict[str, dict[int, bytes]] = field(default_factory=dict)
    boot_log: bytes | None = None

    def __post_init__(self) -> None:
        replayed = replay_event_log(parse_event_log(self.log))
        self.pcrs = {bank: {i: replayed[bank][i] for i in BOOT_PCRS} for bank in replayed}
        self.boot_log = self.log

    def extend(self, bank: str, index: int, digest: bytes) -> None:
        hash_name = "sha1" if bank == "sha1" else "sha256"
        self.pcrs[bank][index] = hashlib.new(hash_name, self.pcrs[bank][index] + digest).digest()

    def answer(self, nonce: bytes, selection: dict[PcrBank, list[int]]) -> RoundEvidence:
        quoted = {bank: {i: self.pcrs[bank][i] for i in pcrs} for bank, pcrs in selection.items()}
        attest, signature = self.ak.quote(
            quote_qualifying_data(nonce, None),
            {BANKS[bank]: values for bank, values in quoted.items()},
        )
        return RoundEvidence(
            nonce=nonce,
            attest=attest,
            signature=signature,
            pcrs=quoted,
            ima_offset=0,
            ima_lines=[],
            boot_log=self.boot_log,
        )


def _policy(*, golden: dict[PcrBank, dict[int, bytes]] | None = None) -> AttestationPolicy:
    return AttestationPolicy(
        name="p",
        version=1,
        boot=BootPolicy(golden=golden or {}),
        runtime=None,
        ima_banks=(PcrBank.SHA256,),
        boot_log_replay=True,
    )


def _round(node: BootedNode, policy: AttestationPolicy) -> RoundResult:
    nonce = os.urandom(32)
    return verify_round(
        node.answer(nonce, policy.pcr_selection()),
        ak=node.ak.public,
        policy=policy,
        previous=RoundMemory(),
        now=NOW,
    )


def _edited(log: bytes, pcr: int, digest: bytes) -> bytes:
    """``log`` with the sha256 digest of the last event on ``pcr`` replaced (after boot)."""
    parsed = parse_event_log(log)
    index = max(i for i, e in enumerate(parsed.events) if e.pcr == pcr)
    events = list(parsed.events)
    events[index] = replace(
        events[index], digests={**events[index].digests, PcrBank.SHA256: digest}
    )
    return encode_event_log(replace(parsed, events=tuple(events)))


@pytest.mark.parametrize("log", [AGILE, SECUREBOOT], ids=["sha1+sha256 locality 3", "secureboot"])
def test_node_whose_pcrs_are_the_replay_of_its_log_passes(log: bytes) -> None:
    result = _round(BootedNode(log), _policy())
    assert result.outcome is Outcome.PASSED, result.message


def test_policy_asks_for_pcrs_0_to_7_in_the_golden_banks_or_sha256() -> None:
    assert _policy().pcr_selection() == {PcrBank.SHA256: list(BOOT_PCRS)}
    golden = {PcrBank.SHA1: {0: bytes(20)}, PcrBank.SHA256: {9: bytes(32)}}
    assert _policy(golden=golden).pcr_selection() == {
        PcrBank.SHA1: [*BOOT_PCRS],
        PcrBank.SHA256: [*BOOT_PCRS, 9],
    }
    plain = replace(_policy(), boot_log_replay=False)
    assert plain.pcr_selection() == {PcrBank.SHA256: [0]}


def test_both_banks_are_checked_when_both_are_quoted() -> None:
    node = BootedNode(AGILE)
    golden = {PcrBank.SHA1: {0: node.pcrs[PcrBank.SHA1][0]}}
    assert _round(node, _policy(golden=golden)).outcome is Outcome.PASSED
    node.extend(PcrBank.SHA1, 5, os.urandom(20))
    result = _round(node, _policy(golden=golden))
    assert result.reason == "boot_log_pcr_mismatch"
    assert result.details["bank"] == "sha1"
    assert result.details["pcr"] == "5"


def test_log_edited_after_boot_fails_naming_the_pcr_and_both_values() -> None:
    node = BootedNode(AGILE)
    node.boot_log = _edited(AGILE, 4, hashlib.sha256(b"a benign-looking bootloader").digest())
    result = _round(node, _policy())
    assert result.outcome is Outcome.INTEGRITY_FAILURE
    assert result.reason == "boot_log_pcr_mismatch"
    quoted = node.pcrs[PcrBank.SHA256][4].hex()
    assert "sha256 PCR 4" in result.message
    assert quoted in result.message
    assert result.details["actual"] == quoted
    assert result.details["expected"] != quoted
    assert result.details["expected"] in result.message


def test_pcr_extended_without_a_log_event_fails() -> None:
    node = BootedNode(SECUREBOOT)
    node.extend("sha256", 7, hashlib.sha256(b"unlogged").digest())
    result = _round(node, _policy())
    assert result.reason == "boot_log_pcr_mismatch"
    assert result.details["pcr"] == "7"


def test_startup_locality_is_part_of_pcr0() -> None:
    """Dropping the StartupLocality event makes PCR 0 start at 0: the replay no longer fits."""
    node = BootedNode(AGILE)
    parsed = parse_event_log(AGILE)
    without: EventLog = replace(parsed, events=parsed.events[1:], startup_locality=0)
    node.boot_log = encode_event_log(without)
    result = _round(node, _policy())
    assert result.reason == "boot_log_pcr_mismatch"
    assert result.details["pcr"] == "0"


def test_missing_log_fails_when_the_policy_replays_it() -> None:
    node = BootedNode(AGILE)
    node.boot_log = None
    result = _round(node, _policy())
    assert result.outcome is Outcome.INTEGRITY_FAILURE
    assert result.reason == "boot_log_missing"
    assert _round(node, replace(_policy(), boot_log_replay=False)).outcome is Outcome.PASSED


@pytest.mark.parametrize("bad", [b"", b"bogus\ninvalid\n", AGILE[:1000]])
def test_malformed_log_fails_as_invalid(bad: bytes) -> None:
    node = BootedNode(AGILE)
    node.boot_log = bad
    result = _round(node, _policy())
    assert result.outcome is Outcome.INTEGRITY_FAILURE
    assert result.reason == "boot_log_invalid"
    assert "boot log" in result.message


def test_log_without_any_quoted_bank_is_invalid() -> None:
    node = BootedNode(AGILE)
    node.boot_log = SECUREBOOT  # sha256 only; this policy quotes sha1 only
    policy = _policy(golden={PcrBank.SHA1: {0: node.pcrs[PcrBank.SHA1][0]}})
    evidence = node.answer(os.urandom(32), policy.pcr_selection())
    result = verify_round(
        evidence, ak=node.ak.public, policy=policy, previous=RoundMemory(), now=NOW
    )
    assert result.reason == "boot_log_invalid"
    assert "nothing to compare" in result.message


def test_document_flag_and_wire_carry_the_log_to_the_round() -> None:
    policy = policy_from_document("p", 1, PolicyDocument(boot_log=True), None)
    assert policy.boot_log_replay
    assert not policy_from_document("p", 1, PolicyDocument(), None).boot_log_replay
    response = EvidenceResponse.model_validate_json(
        EvidenceResponse(
            quote=QuoteWire(attest=b"a", signature=b"s"),
            pcrs={},
            ima=ImaWire(offset=0, lines=[]),
            boot_log=AGILE,
        ).model_dump_json()
    )
    assert parse_evidence(response, b"n" * 32).boot_log == AGILE
