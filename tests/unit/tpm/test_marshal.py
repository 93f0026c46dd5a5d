"""The bounds-checked big-endian reader and the writer helpers."""

from __future__ import annotations

import pytest

from geoattest.errors import TpmFormatError
from tpm._marshal import Reader, tpm2b, u8, u16, u32, u64


def test_reads_big_endian_fields_in_order() -> None:
    data = u8(0xAB) + u16(0x0102) + u32(0x03040506) + u64(0x0708090A0B0C0D0E) + tpm2b(b"xyz")
    r = Reader(data, "T")
    assert (r.u8(), r.u16(), r.u32(), r.u64()) == (0xAB, 0x0102, 0x03040506, 0x0708090A0B0C0D0E)
    assert r.remaining() == 5
    assert r.tpm2b() == b"xyz"
    assert r.offset == len(data)
    r.expect_end()


@pytest.mark.parametrize("method", ["u8", "u16", "u32", "u64", "tpm2b"])
def test_truncation_raises_format_error_naming_the_structure(method: str) -> None:
    r = Reader(b"", "TPMS_EXAMPLE")
    with pytest.raises(TpmFormatError, match="TPMS_EXAMPLE truncated"):
        getattr(r, method)()


def test_tpm2b_size_beyond_data_raises() -> None:
    with pytest.raises(TpmFormatError, match="needs 5 bytes"):
        Reader(b"\x00\x05abc").tpm2b("buf")


def test_tpm2b_max_size_enforced() -> None:
    with pytest.raises(TpmFormatError, match="at most 2 allowed"):
        Reader(tpm2b(b"abc")).tpm2b("buf", max_size=2)
    assert Reader(tpm2b(b"ab")).tpm2b("buf", max_size=2) == b"ab"


def test_take_and_rest() -> None:
    r = Reader(b"abcdef")
    assert r.take(2) == b"ab"
    assert r.rest() == b"cdef"
    r.expect_end()
    with pytest.raises(TpmFormatError):
        r.take(1)


def test_expect_end_rejects_trailing_bytes() -> None:
    r = Reader(b"\x00\x01\xff", "TPMT_X")
    r.u16()
    with pytest.raises(TpmFormatError, match="TPMT_X: 1 trailing bytes"):
        r.expect_end()


def test_writer_helpers() -> None:
    assert u16(0x1234) == b"\x12\x34"
    assert u32(1) == b"\x00\x00\x00\x01"
    assert u64(1) == b"\x00" * 7 + b"\x01"
    assert tpm2b(b"") == b"\x00\x00"
    with pytest.raises(ValueError, match="exceeds 65535"):
        tpm2b(bytes(0x10000))
