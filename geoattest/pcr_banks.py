"""PCR bank names: the one type a bank has from the wire and the policy to the TPM and back.

A bank is named on the wire and in policies as the hash's lower-case name (``"sha256"``); inside
the project it is a ``PcrBank``, so mypy refuses a raw string where a bank is meant. The names are
parsed once, at an edge: ``geoattest.wire.PcrBankName`` in the wire models (an unknown name is a
400 ``pcr_bank_unknown`` through ``geoattest.http.validate_json``) or ``parse_bank`` elsewhere.
``PcrBank`` is a ``StrEnum``: it serialises to the same string, so the wire format is unchanged.

A leaf module (``geoattest.errors`` only), so ``tpm``, ``allowlists`` and the wire schemas can all
use it; the mapping to TPM_ALG_IDs lives in ``tpm.constants`` (``bank_alg``, ``alg_bank``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Final

from geoattest.errors import PcrBankUnknown

__all__ = [
    "BANK_DIGEST_SIZES",
    "PcrBank",
    "parse_bank",
    "parse_banks",
]


class PcrBank(enum.StrEnum):
    """A PCR bank the project replays and quotes: the TPM hash algorithms with a hashlib name."""

    SHA1 = "sha1"
    SHA256 = "sha256"
    SHA384 = "sha384"
    SHA512 = "sha512"

    @property
    def digest_size(self) -> int:
        """Bytes in one PCR value of this bank."""
        return BANK_DIGEST_SIZES[self]


BANK_DIGEST_SIZES: Final[dict[PcrBank, int]] = {
    PcrBank.SHA1: 20,
    PcrBank.SHA256: 32,
    PcrBank.SHA384: 48,
    PcrBank.SHA512: 64,
}
_NAMES: Final = ", ".join(bank.value for bank in PcrBank)


def parse_bank(name: object, *, where: str = "PCR bank") -> PcrBank:
    """The bank called ``name`` (exactly: lower case, no spaces).

    Raises ``PcrBankUnknown`` (400 ``pcr_bank_unknown``) naming ``where`` and the known banks.
    """
    if isinstance(name, PcrBank):
        return name
    if isinstance(name, str):
        try:
            return PcrBank(name)
        except ValueError:
            pass
    shown = ascii(name)[:40]
    raise PcrBankUnknown(f"{where}: unknown PCR bank {shown} (known: {_NAMES})")


def parse_banks(names: Iterable[object], *, where: str = "PCR banks") -> tuple[PcrBank, ...]:
    """``parse_bank`` of each name, in order; raises ``PcrBankUnknown`` at the first unknown."""
    return tuple(parse_bank(name, where=where) for name in names)
