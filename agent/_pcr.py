"""PCR bank names and selections (private to ``agent.tpm_device``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tpm2_pytss.constants import TPM2_ALG
from tpm2_pytss.types import TPML_PCR_SELECTION, TPMS_PCR_SELECTION

from geoattest.errors import ConfigurationError

PcrSelection = Mapping[str, Sequence[int]]
PcrValues = dict[str, dict[int, bytes]]

BANKS: dict[str, int] = {
    "sha1": TPM2_ALG.SHA1,
    "sha256": TPM2_ALG.SHA256,
    "sha384": TPM2_ALG.SHA384,
    "sha512": TPM2_ALG.SHA512,
}
DIGEST_SIZES: dict[str, int] = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}
_BANK_NAMES = {alg: name for name, alg in BANKS.items()}
PCR_COUNT = 24


def bank_alg(bank: str) -> int:
    """TPM2_ALG of a bank name (``sha256``); raises ConfigurationError for an unknown bank."""
    try:
        return BANKS[bank]
    except KeyError:
        raise ConfigurationError(
            f"unknown PCR bank {bank!r}; expected one of {sorted(BANKS)}"
        ) from None


def normalize(pcrs: PcrSelection) -> dict[str, list[int]]:
    """Banks in the given order, PCR indices sorted and unique; raises ConfigurationError when a
    bank is unknown or an index is outside 0..23."""
    result: dict[str, list[int]] = {}
    for bank, indices in pcrs.items():
        bank_alg(bank)
        bad = [i for i in indices if not 0 <= i < PCR_COUNT]
        if bad:
            raise ConfigurationError(f"PCR indices out of range 0..23 in bank {bank}: {bad}")
        result[bank] = sorted(set(indices))
    return result


def to_tpml(pcrs: Mapping[str, Sequence[int]]) -> TPML_PCR_SELECTION:
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


def from_tpml(selection: TPML_PCR_SELECTION) -> dict[str, list[int]]:
    """Inverse of ``to_tpml``: bank name → selected indices, in the structure's order."""
    result: dict[str, list[int]] = {}
    for i in range(selection.count):
        item = selection.pcrSelections[i]
        bitmap = bytes(item.pcrSelect)[: item.sizeofSelect]
        bank = _BANK_NAMES.get(int(item.hash), f"alg_{int(item.hash):#x}")
        result[bank] = [n for n in range(len(bitmap) * 8) if bitmap[n // 8] & (1 << (n % 8))]
    return result


def subtract(
    wanted: dict[str, list[int]], got: Mapping[str, Sequence[int]]
) -> dict[str, list[int]]:
    """What remains of ``wanted`` once ``got`` has been read (banks left empty are dropped)."""
    remaining = {
        bank: [i for i in idx if i not in got.get(bank, ())] for bank, idx in wanted.items()
    }
    return {bank: idx for bank, idx in remaining.items() if idx}
