"""Golden boot PCRs: the measured-boot reference values a node's policy pins.

A node whose firmware, bootloader or kernel changed reports other values in PCRs 0-9; the check
names every PCR that differs so an operator sees what changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from geoattest.errors import BootPcrMismatch, PolicyInvalid
from geoattest.pcr_banks import BANK_DIGEST_SIZES, PcrBank


@dataclass(frozen=True, slots=True, kw_only=True)
class BootPolicy:
    """Expected PCR values per bank and PCR index; empty means unchecked."""

    golden: Mapping[PcrBank, Mapping[int, bytes]] = field(default_factory=dict)

    def selection(self) -> dict[PcrBank, list[int]]:
        return {bank: sorted(values) for bank, values in self.golden.items()}


def parse_boot_policy(document: Mapping[PcrBank, Mapping[str, str]]) -> BootPolicy:
    """``{PcrBank.SHA256: {"0": "hex", …}}`` to ``BootPolicy``; ``PolicyInvalid`` names a bad
    entry (also a key that is no ``PcrBank``, from a caller past the type checker)."""
    golden: dict[PcrBank, dict[int, bytes]] = {}
    for bank, values in document.items():
        size = BANK_DIGEST_SIZES.get(bank)
        if size is None or not isinstance(bank, PcrBank):
            raise PolicyInvalid(f"boot_pcrs: unknown bank {bank!r} (sha1, sha256, sha384, sha512)")
        golden[bank] = {}
        for index_text, hex_value in values.items():
            where = f"boot_pcrs.{bank}.{index_text}"
            index = pcr_index(index_text)
            if index is None:
                raise PolicyInvalid(f"{where}: PCR index must be 0..23")
            try:
                value = bytes.fromhex(hex_value)
            except (ValueError, TypeError) as e:
                raise PolicyInvalid(f"{where}: not a hex digest") from e
            if len(value) != size:
                raise PolicyInvalid(f"{where}: {len(value)} bytes, a {bank} PCR has {size}")
            golden[bank][index] = value
    return BootPolicy(golden=golden)


def pcr_index(text: str) -> int | None:
    """``"0"``..``"23"`` (ASCII digits only) as an int, else None."""
    if not (1 <= len(text) <= 2 and text.isascii() and text.isdigit()):
        return None
    index = int(text)
    return index if index <= 23 else None


def check_boot_pcrs(values: Mapping[PcrBank, Mapping[int, bytes]], policy: BootPolicy) -> None:
    """Every golden PCR must be reported and equal; raises ``BootPcrMismatch`` listing the ones
    that differ (``expected … got …``) or are missing."""
    problems = []
    for bank, golden in policy.golden.items():
        reported = values.get(bank, {})
        for index, expected in sorted(golden.items()):
            actual = reported.get(index)
            if actual is None:
                problems.append(f"{bank} PCR {index} not reported")
            elif actual != expected:
                problems.append(
                    f"{bank} PCR {index}: expected {expected.hex()}, got {actual.hex()}"
                )
    if problems:
        raise BootPcrMismatch("boot PCRs differ from the golden values: " + "; ".join(problems))
