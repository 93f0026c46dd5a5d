"""PCR bank names and selections (private to ``agent.tpm_device``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tpm2_pytss.constants import TPM2_ALG
from tpm2_pytss.types import TPML_PCR_SELECTION, TPMS_PCR_SELECTION

from geoattest.errors import ConfigurationError
from geoattest.pcr_banks import PcrBank

PcrSelection = Mapping[PcrBank, Sequence[int]]
PcrValues = dict[PcrBank, dict[int, bytes]]

BANKS: dict[PcrBank, int] = {
    PcrBank.SHA1: TPM2_ALG.SHA1,
    PcrBank.SHA256: TPM2_ALG.SHA256,
    PcrBank.SHA384: TPM2_ALG.SHA384,
    PcrBank.SHA512: TPM2_ALG.SHA512,
}
_BANK_NAMES = {alg: name for name, alg in BANKS.items()}
PCR_COUNT = 24


def bank_alg(bank: PcrBank) -> int:
    """TPM2_ALG of a bank; raises ConfigurationError for a value that is no ``PcrBank`` (a
    caller that slipped a plain string past the type checker)."""
    if not isinstance(bank, PcrBank):
        raise ConfigurationError(f"unknown PCR bank {bank!r}; expected one of {sorted(BANKS)}")
    return BANKS[bank]


def normalize(pcrs: PcrSelection) -> dict[PcrBank, list[int]]:
    """Banks in the given order, PCR indices sorted and unique; raises ConfigurationError when a
    bank is unknown or an index is outside 0..23."""
    result: dict[PcrBank, list[int]] = {}
    for bank, indices in pcrs.items():
        bank_alg(bank)
        bad = [i for i in indices if not 0 <= i < PCR_COUNT]
        if bad:
            raise ConfigurationError(f"PCR indices out of range 0..23 in bank {bank}: {bad}")
        result[bank] = sorted(set(indices))
    return result


def to_tpml(pcrs: PcrSelection) -> TPML_PCR_SELECTION:
    """A TPML_PCR_SELECTION (3-byte bitmaps) for a normalized selection; empty banks are dropped."""
    selections = []
    for bank, indices in pcrs.items():
        if not indices:
            continue
        bitmap = bytearray(3)
        for index in indices:
            bitmap[index // 8] |= 1 << (index % 8)
        selections.append(
            TPMS_PCR_SELECTION(hash=bank_alg(bank), sizeofSelect=3, pcrSelect=bytes(bitmap))
        )
    return TPML_PCR_SELECTION(selections)


def from_tpml(selection: TPML_PCR_SELECTION) -> dict[PcrBank, list[int]]:
    """Inverse of ``to_tpml``: bank → selected indices, in the structure's order. Raises
    ConfigurationError for a bank the TPM answered that is none of ours (never asked for)."""
    result: dict[PcrBank, list[int]] = {}
    for i in range(selection.count):
        item = selection.pcrSelections[i]
        bitmap = bytes(item.pcrSelect)[: item.sizeofSelect]
        bank = _BANK_NAMES.get(int(item.hash))
        if bank is None:
            raise ConfigurationError(f"the TPM answered PCR bank alg {int(item.hash):#x}")
        result[bank] = [n for n in range(len(bitmap) * 8) if bitmap[n // 8] & (1 << (n % 8))]
    return result


def subtract(wanted: dict[PcrBank, list[int]], got: PcrSelection) -> dict[PcrBank, list[int]]:
    """What remains of ``wanted`` once ``got`` has been read (banks left empty are dropped)."""
    remaining = {
        bank: [i for i in idx if i not in got.get(bank, ())] for bank, idx in wanted.items()
    }
    return {bank: idx for bank, idx in remaining.items() if idx}
