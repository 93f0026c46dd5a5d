"""Big-endian TPM 2.0 marshalling: a bounds-checked reader and small writer helpers.

Every read that would run past the end of the buffer raises `TpmFormatError` naming the structure
being read, and `Reader.expect_end` rejects trailing bytes. Nothing here knows any TPM structure
beyond the sized buffer (TPM2B).
"""

from __future__ import annotations

import struct

from geoattest.errors import TpmFormatError

__all__ = ["Reader", "tpm2b", "u8", "u16", "u32", "u64"]

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class Reader:
    """Reads big-endian integers and sized buffers from ``data``, front to back.

    ``what`` names the structure in error messages ("TPMS_ATTEST truncated at offset 12 ...").
    """

    __slots__ = ("_data", "_pos", "what")

    def __init__(self, data: bytes, what: str = "TPM structure") -> None:
        self._data = bytes(data)
        self._pos = 0
        self.what = what

    @property
    def offset(self) -> int:
        """Number of bytes consumed so far."""
        return self._pos

    @property
    def buffer(self) -> bytes:
        """The whole buffer being read (for look-ahead by fast paths; read with the methods)."""
        return self._data

    def _fail(self, n: int, field: str) -> TpmFormatError:
        pos = self._pos
        return TpmFormatError(
            f"{self.what} truncated: {field} needs {n} bytes at offset {pos}, "
            f"only {len(self._data) - pos} left"
        )

    # The methods below inline their bounds checks: parsers call them on every verification.

    def u8(self, field: str = "u8") -> int:
        """One unsigned byte."""
        pos = self._pos
        if pos >= len(self._data):
            raise self._fail(1, field)
        self._pos = pos + 1
        return self._data[pos]

    def u16(self, field: str = "u16") -> int:
        """A big-endian unsigned 16-bit integer."""
        pos = self._pos
        if pos + 2 > len(self._data):
            raise self._fail(2, field)
        self._pos = pos + 2
        value: int = _U16.unpack_from(self._data, pos)[0]
        return value

    def u32(self, field: str = "u32") -> int:
        """A big-endian unsigned 32-bit integer."""
        pos = self._pos
        if pos + 4 > len(self._data):
            raise self._fail(4, field)
        self._pos = pos + 4
        value: int = _U32.unpack_from(self._data, pos)[0]
        return value

    def u64(self, field: str = "u64") -> int:
        """A big-endian unsigned 64-bit integer."""
        pos = self._pos
        if pos + 8 > len(self._data):
            raise self._fail(8, field)
        self._pos = pos + 8
        value: int = _U64.unpack_from(self._data, pos)[0]
        return value

    def take(self, n: int, field: str = "bytes") -> bytes:
        """Exactly ``n`` raw bytes."""
        pos = self._pos
        end = pos + n
        if end > len(self._data):
            raise self._fail(n, field)
        self._pos = end
        return self._data[pos:end]

    def tpm2b(self, field: str = "TPM2B", max_size: int | None = None) -> bytes:
        """A TPM2B: u16 size, then that many bytes; ``max_size`` bounds the size field."""
        data, pos = self._data, self._pos
        if pos + 2 > len(data):
            raise self._fail(2, f"{field}.size")
        size = data[pos] << 8 | data[pos + 1]
        if max_size is not None and size > max_size:
            raise TpmFormatError(
                f"{self.what}: {field} is {size} bytes, at most {max_size} allowed"
            )
        end = pos + 2 + size
        if end > len(data):
            self._pos = pos + 2
            raise self._fail(size, field)
        self._pos = end
        return data[pos + 2 : end]

    def remaining(self) -> int:
        """Number of bytes not read yet."""
        return len(self._data) - self._pos

    def rest(self) -> bytes:
        """All bytes not read yet (consumes them)."""
        pos = self._pos
        self._pos = len(self._data)
        return self._data[pos:]

    def expect_end(self) -> None:
        """Raise `TpmFormatError` if any byte is left unread."""
        left = len(self._data) - self._pos
        if left:
            raise TpmFormatError(f"{self.what}: {left} trailing bytes after offset {self._pos}")


def u8(value: int) -> bytes:
    """``value`` as one byte."""
    return bytes((value,))


def u16(value: int) -> bytes:
    """``value`` as a big-endian u16."""
    return _U16.pack(value)


def u32(value: int) -> bytes:
    """``value`` as a big-endian u32."""
    return _U32.pack(value)


def u64(value: int) -> bytes:
    """``value`` as a big-endian u64."""
    return _U64.pack(value)


def tpm2b(data: bytes) -> bytes:
    """``data`` as a TPM2B (u16 size prefix); raises ValueError above 65535 bytes."""
    if len(data) > 0xFFFF:
        raise ValueError(f"TPM2B payload of {len(data)} bytes exceeds 65535")
    return _U16.pack(len(data)) + data
