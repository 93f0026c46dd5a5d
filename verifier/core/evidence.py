"""Turn an agent's wire answer into the typed evidence of a round."""

from __future__ import annotations

from allowlists.boot import pcr_index
from geoattest.errors import EvidenceMalformed
from geoattest.pcr_banks import PcrBank
from geoattest.wire import EvidenceResponse
from verifier.core.round_types import RoundEvidence


def parse_evidence(response: EvidenceResponse, nonce: bytes) -> RoundEvidence:
    """``EvidenceMalformed`` for values the schema lets through but that are not evidence."""
    pcrs: dict[PcrBank, dict[int, bytes]] = {}
    for bank, values in response.pcrs.items():
        pcrs[bank] = {}
        for index_text, hex_value in values.items():
            index = pcr_index(index_text)
            if index is None:
                raise EvidenceMalformed(f"PCR index {index_text!r} in bank {bank} is not 0..23")
            try:
                pcrs[bank][index] = bytes.fromhex(hex_value)
            except ValueError as e:
                raise EvidenceMalformed(f"{bank} PCR {index} is not hex: {e}") from e
    return RoundEvidence(
        nonce=nonce,
        attest=response.quote.attest,
        signature=response.quote.signature,
        pcrs=pcrs,
        ima_offset=response.ima.offset,
        # The kernel's bytes, as text the IMA parser rebuilds them from (surrogateescape).
        ima_lines=[entry.decode("utf-8", "surrogateescape") for entry in response.ima.entries()],
        location=response.location,
        location_signature=response.location_signature,
        boot_log=response.boot_log,
    )
