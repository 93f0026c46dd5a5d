"""The simulator's evidence is genuine-format: it passes the verifier's pure checks, and each
tamper knob makes the matching check fail."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

import tpm
from geoattest.dev.ima_emulator import ima_ng_entry
from geoattest.errors import (
    ClockNotMonotonic,
    NonceMismatch,
    PcrDigestMismatch,
    QuoteSignatureInvalid,
    TpmFormatError,
)
from geoattest.pcr_banks import PcrBank
from geoattest.wire import EvidenceRequest, EvidenceResponse, quote_qualifying_data
from tests.support.agent_simulator import AgentSimulator, Malformed
from tests.support.software_pki import SoftwareCa, make_ca
from tests.support.software_tpm import software_activate
from tpm import Alg

PCRS = {PcrBank.SHA1: [10], PcrBank.SHA256: [0, 1, 2, 3, 4, 5, 6, 7, 10]}
ALGS = {PcrBank.SHA1: Alg.SHA1, PcrBank.SHA256: Alg.SHA256}


@pytest.fixture(scope="module")
def ca() -> SoftwareCa:
    return make_ca()


@pytest.fixture
def sim(ca: SoftwareCa) -> AgentSimulator:
    return AgentSimulator("sim-1", ca)


def _ask(sim: AgentSimulator, offset: int = 0) -> tuple[bytes, EvidenceResponse]:
    nonce = os.urandom(20)
    return nonce, sim.respond(EvidenceRequest(nonce=nonce.hex(), pcrs=PCRS, ima_offset=offset))


def _verify(sim: AgentSimulator, nonce: bytes, evidence: EvidenceResponse) -> tpm.QuoteResult:
    values = {
        ALGS[bank]: {int(i): bytes.fromhex(v) for i, v in pcrs.items()}
        for bank, pcrs in evidence.pcrs.items()
    }
    return tpm.verify_quote(
        ak=tpm.parse_tpm2b_public(sim.ak_public),
        attest=evidence.quote.attest,
        signature=evidence.quote.signature,
        nonce=quote_qualifying_data(nonce, None),
        pcr_values=values,
    )


def _replay(lines: list[str], bank: PcrBank) -> bytes:
    """PCR 10 from ima-ng lines (re-encoding each entry from its path and digest)."""
    pcr = bytes(hashlib.new(bank).digest_size)
    for line in lines:
        _, _, _, alg_digest, path = line.split(" ", 4)
        alg, digest = alg_digest.split(":")
        entry = ima_ng_entry(path, bytes.fromhex(digest), digest_alg=alg)
        assert entry.line == line
        pcr = hashlib.new(bank, pcr + entry.pcr_digests[bank]).digest()
    return pcr


def test_honest_evidence_verifies_and_replays(sim: AgentSimulator) -> None:
    nonce, first = _ask(sim)
    result = _verify(sim, nonce, first)
    assert first.ima.lines[0].endswith(" boot_aggregate")
    for bank in (PcrBank.SHA1, PcrBank.SHA256):
        assert _replay(first.ima.lines, bank).hex() == first.pcrs[bank]["10"]
    sim.measure("/usr/bin/tool", content=b"tool")
    nonce, second = _ask(sim, offset=1)
    later = _verify(sim, nonce, second)
    assert second.ima.offset == 1
    assert second.ima.lines == [sim.entries[1].line]
    assert (
        _replay(first.ima.lines + second.ima.lines, PcrBank.SHA256).hex()
        == second.pcrs[PcrBank.SHA256]["10"]
    )
    assert (
        tpm.check_clock_progress(result.clock_info, later.clock_info) is tpm.ClockProgress.SAME_BOOT
    )


def test_every_simulator_of_a_platform_boots_to_the_same_pcrs(ca: SoftwareCa) -> None:
    one, two = AgentSimulator("a", ca), AgentSimulator("b", ca)
    assert one.pcrs == two.pcrs
    assert one.ak_public != two.ak_public


def test_tampered_pcr_fails_the_digest(sim: AgentSimulator) -> None:
    nonce, evidence = _ask(sim)
    doc = evidence.model_dump()
    doc["pcrs"][PcrBank.SHA256]["10"] = "00" * 32
    with pytest.raises(PcrDigestMismatch):
        _verify(sim, nonce, EvidenceResponse.model_validate(doc))


def test_pcr_knob_and_extend_without_log_break_the_replay(sim: AgentSimulator) -> None:
    sim.extend_without_log()
    nonce, evidence = _ask(sim)
    _verify(sim, nonce, evidence)  # the quote is genuine...
    assert (
        _replay(evidence.ima.lines, PcrBank.SHA256).hex() != evidence.pcrs[PcrBank.SHA256]["10"]
    )  # ...the log is not
    sim.pcrs[PcrBank.SHA256][10] = bytes(32)
    _, evidence = _ask(sim)
    assert evidence.pcrs[PcrBank.SHA256]["10"] == "00" * 32


def test_replay_next_answers_an_old_quote_once(sim: AgentSimulator) -> None:
    _, old = _ask(sim)
    sim.replay_next = old
    nonce, replayed = _ask(sim)
    assert replayed == old
    with pytest.raises(NonceMismatch):
        _verify(sim, nonce, replayed)
    nonce, fresh = _ask(sim)
    _verify(sim, nonce, fresh)


def test_sign_with_another_key_fails_the_signature(sim: AgentSimulator) -> None:
    sim.sign_with = ec.generate_private_key(ec.SECP256R1())
    nonce, evidence = _ask(sim)
    with pytest.raises(QuoteSignatureInvalid):
        _verify(sim, nonce, evidence)


def test_reboot_moves_reset_count_and_restarts_the_log(sim: AgentSimulator) -> None:
    nonce, before = _ask(sim)
    first = _verify(sim, nonce, before)
    sim.measure("/bin/x", content=b"x")
    sim.reboot()
    nonce, after = _ask(sim, offset=2)
    second = _verify(sim, nonce, after)
    assert tpm.check_clock_progress(first.clock_info, second.clock_info) is tpm.ClockProgress.REBOOT
    assert after.ima.offset == 0  # the verifier's offset is past the new log
    assert len(after.ima.lines) == 1
    assert after.pcrs[PcrBank.SHA256]["0"] == before.pcrs[PcrBank.SHA256]["0"]
    with pytest.raises(ClockNotMonotonic):
        tpm.check_clock_progress(second.clock_info, first.clock_info)


def test_log_attacks(sim: AgentSimulator) -> None:
    for n in range(3):
        sim.measure(f"/bin/{n}", content=bytes([n]))
    sim.rewrite_line(2, digest=bytes(32))
    _, evidence = _ask(sim)
    assert _replay(evidence.ima.lines, PcrBank.SHA256).hex() != evidence.pcrs[PcrBank.SHA256]["10"]
    sim.truncate_log(2)
    _, evidence = _ask(sim, offset=3)
    assert evidence.ima.offset == 0
    assert len(evidence.ima.lines) == 2


@pytest.mark.parametrize("how", list(Malformed))
def test_malformed_answers_do_not_parse_or_verify(sim: AgentSimulator, how: Malformed) -> None:
    nonce = os.urandom(20)
    body = EvidenceRequest(nonce=nonce.hex(), pcrs=PCRS).model_dump_json().encode()
    sim.malformed = how
    status, answer = sim.answer(body)
    assert status == 200
    try:
        evidence = EvidenceResponse.model_validate_json(answer)
    except ValueError:
        return  # refused at the wire edge
    if how is Malformed.BAD_IMA_LINE:
        assert evidence.ima.lines[-1] == "10 not-a-hash ima-ng"
        return
    with pytest.raises((TpmFormatError, QuoteSignatureInvalid)):
        _verify(sim, nonce, evidence)


def test_bad_requests_are_400(sim: AgentSimulator) -> None:
    status, answer = sim.answer(b'{"nonce": "zz"}')
    assert status == 400
    assert json.loads(answer)["error"]["code"] == "malformed_request"


def test_software_activation_answers_make_credential(sim: AgentSimulator) -> None:
    secret = os.urandom(32)
    challenge = tpm.make_credential(sim.tpm.ek, sim.tpm.ak.name, secret)
    assert (
        sim.tpm.activate_credential(challenge.credential_blob, challenge.encrypted_secret) == secret
    )
    other = tpm.make_credential(
        sim.tpm.ek, tpm.ak_public(ec.generate_private_key(ec.SECP256R1()).public_key()).name, secret
    )
    with pytest.raises(ValueError, match="HMAC"):
        software_activate(
            sim.tpm.ek_key,
            sim.tpm.ek,
            sim.tpm.ak.name,
            other.credential_blob,
            other.encrypted_secret,
        )
