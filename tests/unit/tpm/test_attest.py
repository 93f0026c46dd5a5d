"""TPMS_ATTEST parsing and encoding against real quotes."""

from __future__ import annotations

import base64

import pytest

from geoattest.errors import TpmFormatError
from tests.paths import vector
from tests.unit.tpm.vectors import QuoteVector, deluxe_vectors
from tpm import (
    Alg,
    Attest,
    CertifyInfo,
    ClockInfo,
    PcrSelection,
    QuoteInfo,
    St,
    encode_tpms_attest,
    encode_tpmt_signature,
    parse_tpm2_tools_pcr_blob,
    parse_tpms_attest,
    parse_tpmt_signature,
    pcr_digest,
)


def test_keylime_checkquote_fields(checkquote_vector: QuoteVector) -> None:
    a = parse_tpms_attest(checkquote_vector.attest)
    assert a.magic == 0xFF544347
    assert a.type is St.ATTEST_QUOTE
    assert a.extra_data == b"Ai5M5SjYjnkyv4P7itH1"
    assert a.firmware_version == 0x2019102300163636
    assert a.clock_info == ClockInfo(clock=1284787942, reset_count=3, restart_count=0, safe=True)
    assert isinstance(a.attested, QuoteInfo)
    assert a.attested.pcr_selection == PcrSelection.of({Alg.SHA256: [16]})
    assert a.attested.pcr_digest.hex() == (
        "6d4d3749132f6257172164cd5ff3135f447973d4a5c84e018901f6753705b701"
    )


@pytest.mark.parametrize(
    ("entry", "quote"), [pytest.param(e, v, id=str(e["dir"])) for e, v in deluxe_vectors()]
)
def test_deluxe_quotes_match_recorded_fields(entry: dict[str, object], quote: QuoteVector) -> None:
    a = parse_tpms_attest(quote.attest)
    assert a.extra_data == str(entry["nonce"]).encode()
    assert a.clock_info.clock == entry["clock"]
    assert a.clock_info.reset_count == entry["resetCount"]
    assert a.clock_info.restart_count == entry["restartCount"]
    assert a.firmware_version == int(str(entry["firmwareVersion"]), 16)
    assert a.qualified_signer.hex() == entry["qualifiedSigner"]
    assert isinstance(a.attested, QuoteInfo)
    assert a.attested.pcr_digest.hex() == entry["pcrDigest"]
    assert (
        f"sha256:{','.join(map(str, a.attested.pcr_selection.as_dict()[Alg.SHA256]))}"
        == (entry["pcr_selection"])
    )
    assert encode_tpms_attest(a) == quote.attest


def test_encode_round_trip(tools_vector: QuoteVector, checkquote_vector: QuoteVector) -> None:
    for v in (tools_vector, checkquote_vector):
        assert encode_tpms_attest(parse_tpms_attest(v.attest)) == v.attest


def test_certify_round_trip() -> None:
    a = Attest(
        type=St.ATTEST_CERTIFY,
        qualified_signer=b"\x00\x0b" + bytes(32),
        extra_data=b"nonce",
        clock_info=ClockInfo(clock=5, reset_count=1, restart_count=2, safe=False),
        firmware_version=7,
        attested=CertifyInfo(
            name=b"\x00\x0b" + b"\x01" * 32, qualified_name=b"\x00\x0b" + b"\x02" * 32
        ),
    )
    assert parse_tpms_attest(encode_tpms_attest(a)) == a


def test_encoder_rejects_type_and_info_disagreeing() -> None:
    a = Attest(
        type=St.ATTEST_CERTIFY,
        qualified_signer=b"",
        extra_data=b"",
        clock_info=ClockInfo(clock=0, reset_count=0, restart_count=0, safe=True),
        firmware_version=0,
        attested=QuoteInfo(pcr_selection=PcrSelection(banks=()), pcr_digest=b""),
    )
    with pytest.raises(ValueError, match="QuoteInfo needs type ATTEST_QUOTE"):
        encode_tpms_attest(a)


def test_bad_magic_and_type_rejected(tools_vector: QuoteVector) -> None:
    with pytest.raises(TpmFormatError, match="magic is 0x00544347"):
        parse_tpms_attest(b"\x00" + tools_vector.attest[1:])
    with pytest.raises(TpmFormatError, match="type 0x8019 is not ATTEST_QUOTE"):
        parse_tpms_attest(tools_vector.attest[:4] + b"\x80\x19" + tools_vector.attest[6:])


def test_safe_flag_must_be_boolean(checkquote_vector: QuoteVector) -> None:
    data = bytearray(checkquote_vector.attest)
    safe_at = 6 + 2 + 34 + 2 + 20 + 8 + 4 + 4
    assert data[safe_at] == 1
    data[safe_at] = 2
    with pytest.raises(TpmFormatError, match="safe is 2"):
        parse_tpms_attest(bytes(data))


def test_every_truncation_and_trailing_byte_rejected(tools_vector: QuoteVector) -> None:
    for n in range(len(tools_vector.attest)):
        with pytest.raises(TpmFormatError):
            parse_tpms_attest(tools_vector.attest[:n])
    with pytest.raises(TpmFormatError, match="trailing"):
        parse_tpms_attest(tools_vector.attest + b"\x00")


def test_rust_keylime_wire_quote_round_trips() -> None:
    """rust-keylime's `r<attest>:<sig>:<pcrs>` quote (sha1 bank, no AK published)."""
    wire = vector("keylime/quote/rust-keylime/test-quote.txt").read_text().strip()
    assert wire.startswith("r")
    attest, sig, pcrs = (base64.b64decode(part) for part in wire[1:].split(":"))
    parsed = parse_tpms_attest(attest)
    assert parsed.extra_data == b"TEST"
    assert encode_tpms_attest(parsed) == attest
    signature = parse_tpmt_signature(sig)
    assert (signature.sig_alg, signature.hash_alg) == (Alg.RSASSA, Alg.SHA1)
    assert encode_tpmt_signature(signature) == sig
    dump = parse_tpm2_tools_pcr_blob(pcrs)
    assert isinstance(parsed.attested, QuoteInfo)
    assert dump.selection == parsed.attested.pcr_selection
    assert pcr_digest(dump.values, dump.selection, Alg.SHA1) == parsed.attested.pcr_digest
