"""PCR selections (TPML_PCR_SELECTION), PCR composite digests, and tpm2-tools PCR dumps."""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from geoattest.errors import PcrSelectionMismatch, TpmFormatError
from tpm._marshal import Reader, u8, u16, u32
from tpm.constants import Alg, digest_size, hash_constructor, to_alg

__all__ = [
    "PcrSelection",
    "PcrValues",
    "ToolsPcrDump",
    "encode_tpml_pcr_selection",
    "parse_tpm2_tools_pcr_blob",
    "parse_tpml_pcr_selection",
    "pcr_digest",
    "read_tpml_pcr_selection",
]

PcrValues = Mapping[Alg, Mapping[int, bytes]] | Mapping[int, Mapping[int, bytes]]
"""PCR values by bank (`Alg` or the plain TPM_ALG_ID of the hash) then PCR index."""

_MAX_BANKS = 16  # HASH_COUNT bound used by the TSS; a real TPM has at most a handful of banks.
_MAX_SELECT = 8  # sizeofSelect bound (64 PCRs); TPMs use 3.
# _BITS[n][byte]: the PCR indices set in bitmap byte number n (LSB is the lowest PCR).
_BITS = tuple(
    tuple(tuple(8 * n + bit for bit in range(8) if byte >> bit & 1) for byte in range(256))
    for n in range(_MAX_SELECT)
)


@dataclass(frozen=True, slots=True, kw_only=True)
class PcrSelection:
    """Selected PCRs per bank, in TPML order; indices ascending within a bank.

    Banks with no PCR selected are kept (they occur in real TPML_PCR_SELECTIONs) but do not count
    when two selections are compared with `same_pcrs`.
    """

    banks: tuple[tuple[Alg, tuple[int, ...]], ...]

    def __post_init__(self) -> None:
        seen: set[Alg] = set()
        for alg, indices in self.banks:
            digest_size(alg)  # raises TpmFormatError for a non-hash bank
            if alg in seen:
                raise TpmFormatError(f"PCR selection lists bank {alg.name} twice")
            seen.add(alg)
            if list(indices) != sorted(set(indices)) or any(
                not 0 <= i < 8 * _MAX_SELECT for i in indices
            ):
                raise TpmFormatError(f"PCR selection {alg.name}: bad PCR indices {indices}")

    @classmethod
    def _from_parsed(cls, banks: tuple[tuple[Alg, tuple[int, ...]], ...]) -> PcrSelection:
        """Fast constructor for banks decoded from a bitmap (indices already sorted, in range)."""
        algs = [alg for alg, _ in banks]
        if len(set(algs)) != len(algs):
            raise TpmFormatError(f"PCR selection lists a bank twice: {[a.name for a in algs]}")
        for alg in algs:
            digest_size(alg)
        obj = object.__new__(cls)
        object.__setattr__(obj, "banks", banks)
        return obj

    @classmethod
    def of(cls, banks: Mapping[int, Iterable[int]]) -> PcrSelection:
        """Selection from ``{bank_alg: pcr_indices}`` (indices sorted; bank order kept)."""
        return cls(
            banks=tuple(
                (to_alg(alg, "PCR bank"), tuple(sorted(set(idx)))) for alg, idx in banks.items()
            )
        )

    @classmethod
    def of_values(cls, values: PcrValues) -> PcrSelection:
        """The selection covered by ``values`` (every PCR given, per bank)."""
        return cls.of({alg: pcrs.keys() for alg, pcrs in values.items()})

    def as_dict(self) -> dict[Alg, tuple[int, ...]]:
        """``{bank: indices}`` without empty banks."""
        return {alg: idx for alg, idx in self.banks if idx}

    def same_pcrs(self, other: PcrSelection) -> bool:
        """True when both select the same PCRs per bank (bank order and empty banks ignored)."""
        return self.as_dict() == other.as_dict()

    def count(self) -> int:
        """Number of PCRs selected over all banks."""
        return sum(len(idx) for _, idx in self.banks)

    def __str__(self) -> str:
        return (
            "+".join(
                f"{alg.name.lower()}:{','.join(map(str, idx))}" for alg, idx in self.banks if idx
            )
            or "(none)"
        )


def read_tpml_pcr_selection(r: Reader) -> PcrSelection:
    """Read a TPML_PCR_SELECTION from ``r``; raises `TpmFormatError` when malformed.

    An agent quotes the same selection every round, so decoded selections are memoised on their
    bytes; this look-ahead only measures how many bytes the list spans.
    """
    buf, start = r.buffer, r.offset
    end = start + 4
    if end <= len(buf):
        count = int.from_bytes(buf[start:end], "big")
        for _ in range(min(count, _MAX_BANKS)):
            if end + 3 > len(buf):
                break
            end += 3 + buf[end + 2]
    return _parse_selection_cached(r.take(end - start, "TPML_PCR_SELECTION"))


def _read_selection_uncached(r: Reader) -> PcrSelection:
    count = r.u32("pcrSelections.count")
    if count > _MAX_BANKS:
        raise TpmFormatError(f"TPML_PCR_SELECTION count {count} exceeds {_MAX_BANKS}")
    banks = []
    for _ in range(count):
        alg = to_alg(r.u16("pcrSelection.hash"), "PCR bank")
        size = r.u8("pcrSelection.sizeofSelect")
        if size > _MAX_SELECT:
            raise TpmFormatError(f"TPMS_PCR_SELECTION sizeofSelect {size} exceeds {_MAX_SELECT}")
        bitmap = r.take(size, "pcrSelection.pcrSelect")
        indices: tuple[int, ...] = ()
        for byte_no, byte in enumerate(bitmap):
            if byte:
                indices += _BITS[byte_no][byte]
        banks.append((alg, indices))
    return PcrSelection._from_parsed(tuple(banks))


def parse_tpml_pcr_selection(data: bytes) -> PcrSelection:
    """Parse a complete TPML_PCR_SELECTION; raises `TpmFormatError` (also on trailing bytes)."""
    return _parse_selection_cached(bytes(data))


@functools.lru_cache(maxsize=1024)
def _parse_selection_cached(data: bytes) -> PcrSelection:
    r = Reader(data, "TPML_PCR_SELECTION")
    selection = _read_selection_uncached(r)
    r.expect_end()
    return selection


def encode_tpml_pcr_selection(selection: PcrSelection) -> bytes:
    """Marshal ``selection`` as a TPML_PCR_SELECTION (sizeofSelect at least 3, as TPMs use)."""
    out = [u32(len(selection.banks))]
    for alg, indices in selection.banks:
        size = max(3, (max(indices) // 8 + 1) if indices else 0)
        bitmap = bytearray(size)
        for i in indices:
            bitmap[i // 8] |= 1 << (i % 8)
        out.append(u16(alg) + u8(size) + bytes(bitmap))
    return b"".join(out)


def pcr_digest(values: PcrValues, selection: PcrSelection, hash_alg: int) -> bytes:
    """H_hash_alg of the selected PCR values concatenated in selection order (TPMS_QUOTE_INFO).

    Raises `PcrSelectionMismatch` when a selected PCR has no value, and `TpmFormatError` when a
    value's length is not its bank's digest size or a hash algorithm is unsupported.
    """
    parts: list[bytes] = []
    for alg, indices in selection.banks:
        if not indices:
            continue
        bank = values.get(alg, {})
        try:
            chosen = [bank[i] for i in indices]
        except KeyError:
            missing = next(i for i in indices if i not in bank)
            raise PcrSelectionMismatch(
                f"PCR {alg.name.lower()}:{missing} is selected but no value given"
            ) from None
        size = digest_size(alg)
        if set(map(len, chosen)) != {size}:
            i, value = next((i, v) for i, v in zip(indices, chosen, strict=True) if len(v) != size)
            raise TpmFormatError(
                f"PCR {alg.name.lower()}:{i} value is {len(value)} bytes, expected {size}"
            )
        parts += chosen
    h = hash_constructor(hash_alg)()
    h.update(b"".join(parts))
    return h.digest()


# --- tpm2-tools `tpm2_quote -o/--pcr` dump (host byte order, little-endian) ---------------------

_TOOLS_SEL = struct.Struct("<HB4sx")  # TPMS_PCR_SELECTION: hash, sizeofSelect, pcrSelect[4], pad
_TOOLS_HEAD = 4 + 16 * _TOOLS_SEL.size  # TPML_PCR_SELECTION with 16 slots = 132 bytes
_TOOLS_DIGEST = struct.Struct("<H64s")  # TPM2B_DIGEST: size, buffer[64]
_TOOLS_LIST = 4 + 8 * _TOOLS_DIGEST.size  # TPML_DIGEST with 8 slots = 532 bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolsPcrDump:
    """A decoded tpm2-tools PCR dump: the selection and the values it carries."""

    selection: PcrSelection
    values: Mapping[Alg, Mapping[int, bytes]]


def parse_tpm2_tools_pcr_blob(blob: bytes) -> ToolsPcrDump:
    """Decode tpm2-tools' raw PCR dump (what Keylime sends as the third quote blob).

    Layout (little-endian C structs): u32 count + 16 TPMS_PCR_SELECTION slots of 8 bytes, u32
    number of TPML_DIGESTs, then each TPML_DIGEST as u32 count + 8 slots of (u16 size, 64 bytes).
    Digests fill the selected PCRs in selection order. Raises `TpmFormatError` on a wrong total
    size, counts out of range, a digest count that does not match the selection, or a digest whose
    size is not its bank's.
    """
    if len(blob) < _TOOLS_HEAD + 4 or (len(blob) - _TOOLS_HEAD - 4) % _TOOLS_LIST:
        raise TpmFormatError(f"tpm2-tools PCR dump has an impossible size of {len(blob)} bytes")
    (count,) = struct.unpack_from("<I", blob, 0)
    if count > 16:
        raise TpmFormatError(f"tpm2-tools PCR dump selects {count} banks, at most 16")
    banks = []
    for k in range(count):
        alg_id, size, bitmap, *_ = _TOOLS_SEL.unpack_from(blob, 4 + k * _TOOLS_SEL.size)
        if size > 4:
            raise TpmFormatError(f"tpm2-tools PCR dump: sizeofSelect {size} exceeds 4")
        indices = tuple(i for i in range(8 * size) if bitmap[i // 8] >> (i % 8) & 1)
        banks.append((to_alg(alg_id, "PCR bank"), indices))
    selection = PcrSelection(banks=tuple(banks))
    (lists,) = struct.unpack_from("<I", blob, _TOOLS_HEAD)
    if _TOOLS_HEAD + 4 + lists * _TOOLS_LIST != len(blob):
        raise TpmFormatError(
            f"tpm2-tools PCR dump: {lists} digest lists do not fill {len(blob)} bytes"
        )
    digests: list[bytes] = []
    for n in range(lists):
        base = _TOOLS_HEAD + 4 + n * _TOOLS_LIST
        (in_list,) = struct.unpack_from("<I", blob, base)
        if in_list > 8:
            raise TpmFormatError(f"tpm2-tools PCR dump: digest list {n} claims {in_list} entries")
        for slot in range(in_list):
            size, buf = _TOOLS_DIGEST.unpack_from(blob, base + 4 + slot * _TOOLS_DIGEST.size)
            if size > 64:
                raise TpmFormatError(f"tpm2-tools PCR dump: digest size {size} exceeds 64")
            digests.append(buf[:size])
    if len(digests) != selection.count():
        raise TpmFormatError(
            f"tpm2-tools PCR dump carries {len(digests)} digests for {selection.count()} "
            f"selected PCRs ({selection})"
        )
    values: dict[Alg, dict[int, bytes]] = {}
    it = iter(digests)
    for alg, indices in selection.banks:
        bank = values.setdefault(alg, {})
        for i in indices:
            value = next(it)
            if len(value) != digest_size(alg):
                raise TpmFormatError(
                    f"tpm2-tools PCR dump: PCR {alg.name.lower()}:{i} is {len(value)} bytes"
                )
            bank[i] = value
    return ToolsPcrDump(selection=selection, values=values)
