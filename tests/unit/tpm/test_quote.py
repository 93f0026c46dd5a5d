"""verify_quote on real quotes and simulated ones, with an attack test for every check."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os

import pytest

from geoattest.errors import (
    ClockNotMonotonic,
    NonceMismatch,
    PcrDigestMismatch,
    PcrSelectionMismatch,
    QuoteSignatureInvalid,
    TpmFormatError,
)
from tests.support.software_tpm import SoftwareAk
from tests.unit.tpm.vectors import QuoteVector, deluxe_vectors
from tpm import (
    Alg,
    ClockInfo,
    ClockProgress,
    PcrSelection,
    PcrValues,
    QuoteResult,
    TpmPublic,
    check_clock_progress,
    encode_tpms_attest,
    parse_tpms_attest,
    verify_quote,
)
from tpm.attest import QuoteInfo


def _verify(
    v: QuoteVector,
    *,
    ak: TpmPublic | None = None,
    attest: bytes | None = None,
    signature: bytes | None = None,
    nonce: bytes | None = None,
    pcr_values: PcrValues | None = None,
    hash_alg: Alg | None = None,
) -> QuoteResult:
    """verify_quote on vector ``v`` with one argument swapped for a bad one."""
    return verify_quote(
        ak=ak or v.ak,
        attest=v.attest if attest is None else attest,
        signature=v.signature if signature is None else signature,
        nonce=v.nonce if nonce is None else nonce,
        pcr_values=v.pcr_values if pcr_values is None else pcr_values,
        hash_alg=hash_alg,
    )


def test_tools_quote_verifies(tools_vector: QuoteVector) -> None:
    result = verify_quote(
        ak=tools_vector.ak,
        attest=tools_vector.attest,
        signature=tools_vector.signature,
        nonce=tools_vector.nonce,
        pcr_values=tools_vector.pcr_values,
    )
    assert str(result.selection) == "sha256:15,16,22"
    assert result.pcr_digest.hex().startswith("ec1636c6")
    assert result.clock_info.clock == 5994
    assert result.hash_alg is Alg.SHA256


def test_checkquote_vector_verifies(checkquote_vector: QuoteVector) -> None:
    result = _verify(checkquote_vector)
    assert result.attest.extra_data == b"Ai5M5SjYjnkyv4P7itH1"


@pytest.mark.parametrize("vector", [pytest.param(v, id=str(e["dir"])) for e, v in deluxe_vectors()])
def test_deluxe_quotes_verify(vector: QuoteVector) -> None:
    _verify(vector)


def test_flipped_attest_byte_fails_signature(checkquote_vector: QuoteVector) -> None:
    attest = bytearray(checkquote_vector.attest)
    attest[5] ^= 0xFF
    with pytest.raises(QuoteSignatureInvalid):
        _verify(checkquote_vector, attest=bytes(attest))


def test_flipped_signature_byte_fails(checkquote_vector: QuoteVector) -> None:
    sig = bytearray(checkquote_vector.signature)
    sig[-1] ^= 0x01
    with pytest.raises(QuoteSignatureInvalid):
        _verify(checkquote_vector, signature=bytes(sig))


def test_other_ak_fails(checkquote_vector: QuoteVector, tools_vector: QuoteVector) -> None:
    with pytest.raises(QuoteSignatureInvalid):
        _verify(checkquote_vector, ak=tools_vector.ak)


def test_wrong_nonce_fails(checkquote_vector: QuoteVector) -> None:
    with pytest.raises(NonceMismatch, match="expected 61"):
        _verify(checkquote_vector, nonce=b"a" + checkquote_vector.nonce[1:])
    with pytest.raises(NonceMismatch):
        _verify(checkquote_vector, nonce=checkquote_vector.nonce + b"x")


def test_changed_pcr_value_fails_digest(tools_vector: QuoteVector) -> None:
    values = tools_vector.pcr_values
    values[Alg.SHA256][16] = bytes(32)
    with pytest.raises(PcrDigestMismatch, match="PCR digest mismatch over sha256:15,16,22"):
        _verify(tools_vector, pcr_values=values)


def test_pcr_selection_must_match_values(tools_vector: QuoteVector) -> None:
    extra = tools_vector.pcr_values
    extra[Alg.SHA256][10] = bytes(32)
    with pytest.raises(PcrSelectionMismatch, match="quote covers sha256:15,16,22"):
        _verify(tools_vector, pcr_values=extra)
    missing = tools_vector.pcr_values
    del missing[Alg.SHA256][22]
    with pytest.raises(PcrSelectionMismatch):
        _verify(tools_vector, pcr_values=missing)
    other_bank = {Alg.SHA1: {i: bytes(20) for i in (15, 16, 22)}}
    with pytest.raises(PcrSelectionMismatch):
        _verify(tools_vector, pcr_values=other_bank)


def test_plain_int_bank_ids_accepted(tools_vector: QuoteVector) -> None:
    values = {int(alg): dict(bank) for alg, bank in tools_vector.pcr_values.items()}
    assert 0x000B in values
    _verify(tools_vector, pcr_values=values)
    values[0x000B][15] = b"\x01" * 32
    with pytest.raises(PcrDigestMismatch):
        _verify(tools_vector, pcr_values=values)


def test_hash_policy(checkquote_vector: QuoteVector) -> None:
    _verify(checkquote_vector, hash_alg=Alg.SHA256)
    with pytest.raises(QuoteSignatureInvalid, match="policy requires SHA1"):
        _verify(checkquote_vector, hash_alg=Alg.SHA1)


# --- software AK: genuine-format quotes the test can tamper with --------------------------------

PCRS = {Alg.SHA256: {i: hashlib.sha256(bytes([i])).digest() for i in (0, 1, 7, 10)}}


@pytest.fixture(params=["ecc", "rsa"])
def sim(request: pytest.FixtureRequest) -> SoftwareAk:
    return SoftwareAk.ecc() if request.param == "ecc" else SoftwareAk.rsa()


def test_simulated_quote_verifies(sim: SoftwareAk) -> None:
    nonce = os.urandom(20)
    attest, sig = sim.quote(nonce, PCRS)
    result = verify_quote(ak=sim.public, attest=attest, signature=sig, nonce=nonce, pcr_values=PCRS)
    assert result.attest.qualified_signer == sim.public.name
    assert result.selection == PcrSelection.of({Alg.SHA256: [0, 1, 7, 10]})


def test_signed_quote_with_wrong_digest_is_caught(sim: SoftwareAk) -> None:
    """A correctly signed quote whose pcrDigest does not match the values (a lying agent)."""
    nonce = os.urandom(20)
    honest = sim.quote_attest(nonce, PCRS)
    assert isinstance(honest.attested, QuoteInfo)
    lying = dataclasses.replace(
        honest, attested=dataclasses.replace(honest.attested, pcr_digest=bytes(32))
    )
    attest = encode_tpms_attest(lying)
    with pytest.raises(PcrDigestMismatch):
        verify_quote(
            ak=sim.public, attest=attest, signature=sim.sign(attest), nonce=nonce, pcr_values=PCRS
        )


def test_signed_quote_replayed_with_old_nonce_is_caught(sim: SoftwareAk) -> None:
    attest, sig = sim.quote(b"stale-nonce", PCRS)
    with pytest.raises(NonceMismatch):
        verify_quote(
            ak=sim.public, attest=attest, signature=sig, nonce=b"fresh-nonce", pcr_values=PCRS
        )


def test_signed_certify_structure_is_not_a_quote(sim: SoftwareAk) -> None:
    attest, sig = sim.certify(sim.public, b"n")
    with pytest.raises(TpmFormatError, match="ATTEST_CERTIFY, expected ATTEST_QUOTE"):
        verify_quote(ak=sim.public, attest=attest, signature=sig, nonce=b"n", pcr_values=PCRS)


def test_signed_garbage_is_a_format_error(sim: SoftwareAk) -> None:
    garbage = b"\xffTCG\x80\x18" + b"\x00" * 3
    with pytest.raises(TpmFormatError):
        verify_quote(
            ak=sim.public, attest=garbage, signature=sim.sign(garbage), nonce=b"", pcr_values={}
        )


# --- clock / counters ----------------------------------------------------------------------------


def _clock(clock: int, reset: int = 0, restart: int = 0, *, safe: bool = True) -> ClockInfo:
    return ClockInfo(clock=clock, reset_count=reset, restart_count=restart, safe=safe)


def test_deluxe_clock_sequence_is_monotonic_and_replay_fails() -> None:
    clocks = [parse_tpms_attest(v.attest).clock_info for _, v in deluxe_vectors()]
    assert check_clock_progress(None, clocks[0]) is ClockProgress.FIRST
    for before, after in itertools.pairwise(clocks):
        assert check_clock_progress(before, after) is ClockProgress.SAME_BOOT
    q2, q3 = clocks[1], clocks[2]
    with pytest.raises(
        ClockNotMonotonic, match="clock went backwards: previous 37815 ms, now 35212"
    ):
        check_clock_progress(q3, q2)


def test_clock_progress_classification() -> None:
    assert check_clock_progress(_clock(10), _clock(10)) is ClockProgress.SAME_BOOT
    assert check_clock_progress(_clock(10), _clock(20, restart=1)) is ClockProgress.RESTART
    assert check_clock_progress(_clock(10, restart=3), _clock(20, reset=1)) is ClockProgress.REBOOT
    # After a disorderly shutdown the clock may fall back; the TPM then reports safe = NO.
    assert check_clock_progress(_clock(10), _clock(5, reset=1, safe=False)) is ClockProgress.REBOOT


@pytest.mark.parametrize(
    ("previous", "current", "message"),
    [
        (_clock(10, reset=2), _clock(20, reset=1), "resetCount went backwards"),
        (_clock(10, restart=2), _clock(20, restart=1), "restartCount went backwards"),
        (_clock(10, restart=1), _clock(5, restart=2), "clock went backwards"),
        (_clock(10), _clock(5, reset=1, safe=True), "across a reboot while safe"),
    ],
)
def test_backwards_moves_rejected(previous: ClockInfo, current: ClockInfo, message: str) -> None:
    with pytest.raises(ClockNotMonotonic, match=message):
        check_clock_progress(previous, current)
