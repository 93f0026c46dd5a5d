"""PCR selections, composite digests and tpm2-tools PCR dumps."""

from __future__ import annotations

import hashlib
import struct

import pytest

from geoattest.errors import PcrSelectionMismatch, TpmFormatError
from tests.paths import vector
from tpm import (
    Alg,
    PcrSelection,
    encode_tpml_pcr_selection,
    parse_tpm2_tools_pcr_blob,
    parse_tpml_pcr_selection,
    pcr_digest,
)

PCR16 = bytes.fromhex("d471c0674951f0ef075aecdd42fbefa6eca6019820add0bd222d1c4e6242ce6f")


def test_selection_wire_format() -> None:
    sel = PcrSelection.of({Alg.SHA256: [22, 15, 16], Alg.SHA1: [0]})
    wire = encode_tpml_pcr_selection(sel)
    assert wire == bytes.fromhex("00000002000b03008041000403010000")
    assert parse_tpml_pcr_selection(wire) == sel
    assert str(sel) == "sha256:15,16,22+sha1:0"
    assert sel.count() == 4


def test_empty_banks_ignored_in_comparison() -> None:
    with_empty = parse_tpml_pcr_selection(bytes.fromhex("00000002000b03000100000403000000"))
    assert with_empty.banks[1] == (Alg.SHA1, ())
    assert with_empty.same_pcrs(PcrSelection.of({Alg.SHA256: [8]}))
    assert not with_empty.same_pcrs(PcrSelection.of({Alg.SHA256: [9]}))
    assert not with_empty.same_pcrs(PcrSelection.of({Alg.SHA1: [8]}))


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ("00000011", "count 17 exceeds 16"),
        ("00000001000b09" + "00" * 9, "sizeofSelect 9 exceeds 8"),
        ("00000001000103000000", "unsupported hash algorithm 0x0001"),
        ("00000002000b03000001000b03000100", "bank twice"),
        ("00000001000b0300", "truncated"),
        ("00000001000b0300000100", "trailing"),
    ],
)
def test_bad_selections_rejected(wire: str, message: str) -> None:
    with pytest.raises(TpmFormatError, match=message):
        parse_tpml_pcr_selection(bytes.fromhex(wire))


def test_selection_constructor_validates() -> None:
    with pytest.raises(TpmFormatError, match="bad PCR indices"):
        PcrSelection(banks=((Alg.SHA256, (3, 1)),))
    with pytest.raises(TpmFormatError, match="twice"):
        PcrSelection(banks=((Alg.SHA256, (1,)), (Alg.SHA256, (2,))))


def test_pcr_digest_concatenates_in_selection_order() -> None:
    values = {Alg.SHA256: {i: bytes([i]) * 32 for i in (1, 2, 3)}, Alg.SHA1: {7: b"\x07" * 20}}
    sel = PcrSelection(banks=((Alg.SHA1, (7,)), (Alg.SHA256, (1, 3))))
    expected = hashlib.sha256(b"\x07" * 20 + b"\x01" * 32 + b"\x03" * 32).digest()
    assert pcr_digest(values, sel, Alg.SHA256) == expected
    assert (
        pcr_digest(values, sel, Alg.SHA1)
        == hashlib.sha1(  # noqa: S324 - TPM SHA-1 bank
            b"\x07" * 20 + b"\x01" * 32 + b"\x03" * 32
        ).digest()
    )


def test_pcr_digest_missing_or_malformed_value() -> None:
    sel = PcrSelection.of({Alg.SHA256: [1, 2]})
    with pytest.raises(PcrSelectionMismatch, match="PCR sha256:2 is selected but no value"):
        pcr_digest({Alg.SHA256: {1: bytes(32)}}, sel, Alg.SHA256)
    with pytest.raises(PcrSelectionMismatch, match="sha256:1"):
        pcr_digest({}, sel, Alg.SHA256)
    with pytest.raises(TpmFormatError, match="PCR sha256:2 value is 31 bytes, expected 32"):
        pcr_digest({Alg.SHA256: {1: bytes(32), 2: bytes(31)}}, sel, Alg.SHA256)


def test_tools_dump_of_keylime_checkquote() -> None:
    dump = parse_tpm2_tools_pcr_blob(
        vector("keylime/quote/keylime_checkquote_sha256/pcrs.tpm2tools.bin").read_bytes()
    )
    assert str(dump.selection) == "sha256:16"
    assert dump.values == {Alg.SHA256: {16: PCR16}}
    assert pcr_digest(dump.values, dump.selection, Alg.SHA256) == hashlib.sha256(PCR16).digest()


def test_tools_dump_of_emulator_quote() -> None:
    dump = parse_tpm2_tools_pcr_blob(
        vector("keylime/tpm2_tools_emulator/quotepcr.out").read_bytes()
    )
    assert str(dump.selection) == "sha256:15,16,22"
    bank = dump.values[Alg.SHA256]
    assert bank[15] == bytes(32)
    assert bank[16].hex().startswith("9dbb2238")
    assert bank[22] == b"\xff" * 32


def _tools_blob(banks: list[tuple[int, bytes]], digests: list[bytes], lists: int = 1) -> bytes:
    head = struct.pack("<I", len(banks))
    for alg, bitmap in banks:
        head += struct.pack("<HB4sx", alg, 3, bitmap)
    head += bytes(8 * (16 - len(banks))) + struct.pack("<I", lists)
    body = b""
    for n in range(lists):
        chunk = digests[8 * n : 8 * n + 8]
        body += struct.pack("<I", len(chunk))
        body += b"".join(struct.pack("<H64s", len(d), d) for d in chunk)
        body += bytes(66 * (8 - len(chunk)))
    return head + body


def test_tools_dump_spanning_two_digest_lists() -> None:
    digests = [bytes([i]) * 32 for i in range(10)]
    blob = _tools_blob([(Alg.SHA256, b"\xff\x03\x00\x00")], digests, lists=2)
    assert len(blob) == 132 + 4 + 2 * 532
    dump = parse_tpm2_tools_pcr_blob(blob)
    assert dump.values[Alg.SHA256] == {i: bytes([i]) * 32 for i in range(10)}


def test_tools_dump_errors() -> None:
    good = _tools_blob([(Alg.SHA256, b"\x01\x00\x00\x00")], [bytes(32)])
    assert len(good) == 668
    parse_tpm2_tools_pcr_blob(good)
    with pytest.raises(TpmFormatError, match="impossible size of 667"):
        parse_tpm2_tools_pcr_blob(good[:-1])
    with pytest.raises(TpmFormatError, match="1 digests for 2 selected PCRs"):
        parse_tpm2_tools_pcr_blob(_tools_blob([(Alg.SHA256, b"\x03\x00\x00\x00")], [bytes(32)]))
    with pytest.raises(TpmFormatError, match="is 20 bytes"):
        parse_tpm2_tools_pcr_blob(_tools_blob([(Alg.SHA256, b"\x01\x00\x00\x00")], [bytes(20)]))
    with pytest.raises(TpmFormatError, match="2 digest lists do not fill"):
        parse_tpm2_tools_pcr_blob(good[:132] + struct.pack("<I", 2) + good[136:])
