"""Attestation evidence between verifier and agent (``POST /v1/evidence`` on the agent's mTLS
API)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Annotated, Self

from pydantic import (
    Field,
    model_validator,
)
from pydantic.functional_validators import BeforeValidator
from pydantic_core import PydanticCustomError

from geoattest.errors import PcrBankUnknown
from geoattest.pcr_banks import PcrBank, parse_bank
from geoattest.wire._base import (
    B64BootLog,
    B64Bytes,
    B64ImaLine,
    _Wire,
)

# --- attestation evidence: verifier ⇄ agent (``POST /v1/evidence`` on the agent's mTLS API) ------


def _wire_bank(value: object) -> PcrBank:
    try:
        return parse_bank(value, where="bank")
    except PcrBankUnknown as e:
        # A pydantic error type of its own, so ``validate_json`` answers with this error's code.
        raise PydanticCustomError(PcrBankUnknown.code, "{message}", {"message": e.message}) from e


# A bank name ("sha256") parsed into a ``PcrBank``: the same string on the wire, typed inside.
BankName = Annotated[PcrBank, BeforeValidator(_wire_bank)]
HexDigest = Annotated[str, Field(pattern=r"^(?:[0-9a-f]{2}){20,64}$")]  # whole bytes only
PcrIndexText = Annotated[str, Field(pattern=r"^(?:1?[0-9]|2[0-3])$")]  # "0".."23", ASCII digits
MAX_PCR_INDEX = 23


class EvidenceRequest(_Wire):
    """What the verifier asks for in one round.

    ``ima_offset`` is the number of IMA entries the verifier has already verified: the agent
    returns the measurement list from that entry on (0 after a reboot or on the first round).
    """

    nonce: Annotated[str, Field(pattern=r"^[0-9a-f]{32,128}$")]  # 16..64 bytes, hex
    # At least one bank, each with at least one PCR, none twice: a quote of nothing proves
    # nothing, and a repeated index has no one meaning for the TPM's selection.
    pcrs: Annotated[
        dict[
            BankName,
            Annotated[list[Annotated[int, Field(ge=0, le=MAX_PCR_INDEX)]], Field(min_length=1)],
        ],
        Field(min_length=1),
    ]
    ima_offset: Annotated[int, Field(ge=0)] = 0
    include_location: bool = False
    include_boot_log: bool = False  # also send the TCG boot event log (binary_bios_measurements)

    @model_validator(mode="after")
    def _each_pcr_once(self) -> Self:
        for bank, indices in self.pcrs.items():
            if len(set(indices)) != len(indices):
                raise ValueError(f"pcrs.{bank} names a PCR more than once: {indices}")
        return self


class QuoteWire(_Wire):
    attest: B64Bytes  # TPMS_ATTEST as the TPM signed it
    signature: B64Bytes  # marshalled TPMT_SIGNATURE


LineIndexText = Annotated[str, Field(pattern=r"^(?:0|[1-9][0-9]{0,8})$")]


def render_line(entry: bytes) -> str:
    """How a line that is not UTF-8 shows in ``ImaWire.lines``: ``\\xNN`` for each byte that
    does not decode (lossy: ``raw_lines`` carries the bytes)."""
    return entry.decode("utf-8", "backslashreplace")


class ImaWire(_Wire):
    """IMA measurement-list entries, byte for byte, each without its final newline.

    The kernel prints names as raw bytes (``allowlists.ima.template``), which JSON text cannot
    always carry. ``lines`` holds one string per entry: the entry itself when it is UTF-8 (a
    ``\\n`` inside a name travels as the JSON escape), otherwise ``render_line`` of it, a
    readable but lossy stand-in. ``raw_lines`` then maps that entry's index (decimal text, 0 is
    the first of ``lines``) to its exact bytes in base64, which replace the stand-in. It is
    omitted when every entry is UTF-8, so a peer from before it sees the same message as before;
    one that ignores it sees the stand-in, as old agents sent, and fails that line's template
    hash as it always did.
    """

    offset: Annotated[int, Field(ge=0)]  # index of the first line below in the whole log
    lines: list[str]  # ascii_runtime_measurements entries, without trailing newline
    raw_lines: dict[LineIndexText, B64ImaLine] | None = None  # index → exact bytes (not UTF-8)

    @model_validator(mode="after")
    def _raw_lines_index_lines(self) -> Self:
        for index in self.raw_lines or {}:
            if int(index) >= len(self.lines):
                raise ValueError(
                    f"raw_lines index {index} is past the {len(self.lines)} lines sent"
                )
        return self

    @classmethod
    def from_entries(cls, offset: int, entries: Sequence[bytes]) -> ImaWire:
        """The wire form of ``entries`` (exact bytes, no final newlines) from entry ``offset``."""
        lines: list[str] = []
        raw: dict[str, bytes] = {}
        for index, entry in enumerate(entries):
            try:
                lines.append(entry.decode("utf-8"))
            except UnicodeDecodeError:
                lines.append(render_line(entry))
                raw[str(index)] = entry
        return cls(offset=offset, lines=lines, raw_lines=raw or None)

    def entries(self) -> list[bytes]:
        """The entries' exact bytes (``raw_lines`` in place of their stand-ins)."""
        raw = self.raw_lines or {}
        return [
            raw[str(index)] if str(index) in raw else line.encode("utf-8")
            for index, line in enumerate(self.lines)
        ]


class EvidenceResponse(_Wire):
    """One round's evidence. The quote's extraData is ``quote_qualifying_data(nonce, location)``;
    the IMA lines are read *after* the quote, so they cover at least what PCR 10 reflects."""

    quote: QuoteWire
    pcrs: dict[BankName, dict[PcrIndexText, HexDigest]]  # bank -> PCR index -> value
    ima: ImaWire
    location: B64Bytes | None = None  # signed location evidence (geofence), when asked for
    location_signature: B64Bytes | None = None  # TPMT_SIGNATURE by the TPM-resident location key
    boot_log: B64BootLog | None = None  # TCG event log, when asked for and the agent has one


def quote_qualifying_data(nonce: bytes, location_evidence: bytes | None) -> bytes:
    """The quote's extraData: binds the verifier's nonce and the location evidence in one digest.

    ``SHA-256("geoattest-quote-v1" ‖ nonce ‖ SHA-256(location evidence))``; without location
    evidence the last part is empty. A quote cannot be reused with other location evidence.
    """
    location_digest = hashlib.sha256(location_evidence).digest() if location_evidence else b""
    return hashlib.sha256(b"geoattest-quote-v1" + nonce + location_digest).digest()
