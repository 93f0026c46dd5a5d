"""The evidence wire schemas of protocol v1, frozen as they shipped (geoattest 0.1, commit d31f1de).

Never edit these: they are what an agent or verifier of that version accepts and sends. The skew
tests check that today's peers interoperate with them in both directions. v1 refused unknown
fields (``extra="forbid"``), which is why today's senders must omit fields at their default.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from geoattest.wire import B64BootLog, B64Bytes

BankName = Annotated[str, Field(pattern=r"^(sha1|sha256|sha384|sha512)$")]
HexDigest = Annotated[str, Field(pattern=r"^(?:[0-9a-f]{2}){20,64}$")]
PcrIndexText = Annotated[str, Field(pattern=r"^(?:1?[0-9]|2[0-3])$")]


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EvidenceRequest(_Wire):
    nonce: Annotated[str, Field(pattern=r"^[0-9a-f]{32,128}$")]
    pcrs: dict[BankName, list[Annotated[int, Field(ge=0, le=23)]]]
    ima_offset: Annotated[int, Field(ge=0)] = 0
    include_location: bool = False
    include_boot_log: bool = False


class QuoteWire(_Wire):
    attest: B64Bytes
    signature: B64Bytes


class ImaWire(_Wire):
    offset: Annotated[int, Field(ge=0)]
    lines: list[str]


class EvidenceResponse(_Wire):
    quote: QuoteWire
    pcrs: dict[BankName, dict[PcrIndexText, HexDigest]]
    ima: ImaWire
    location: B64Bytes | None = None
    location_signature: B64Bytes | None = None
    boot_log: B64BootLog | None = None
