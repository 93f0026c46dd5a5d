"""Real Keylime / tpm2-tools quote vectors (tests/vectors/keylime), loaded for the tpm tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from tests.paths import vector
from tpm import Alg, TpmPublic, ak_public, parse_tpm2_tools_pcr_blob
from tpm.public import PublicKey


@dataclass(frozen=True, kw_only=True)
class QuoteVector:
    """One recorded quote: AK, TPMS_ATTEST, TPMT_SIGNATURE, nonce and the PCR values sent."""

    ak: TpmPublic
    attest: bytes
    signature: bytes
    nonce: bytes
    pcr_blob: bytes

    @property
    def pcr_values(self) -> dict[Alg, dict[int, bytes]]:
        values = parse_tpm2_tools_pcr_blob(self.pcr_blob).values
        return {alg: dict(bank) for alg, bank in values.items()}


def load_pem_key(path: Path) -> PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    assert isinstance(key, PublicKey)
    return key


def keylime_dir_vector(directory: Path, ak_pem: Path) -> QuoteVector:
    return QuoteVector(
        ak=ak_public(load_pem_key(ak_pem)),
        attest=(directory / "quote.tpms_attest.bin").read_bytes(),
        signature=(directory / "quote.tpmt_signature.bin").read_bytes(),
        nonce=(directory / "nonce.txt").read_bytes(),
        pcr_blob=(directory / "pcrs.tpm2tools.bin").read_bytes(),
    )


def deluxe_vectors() -> list[tuple[dict[str, Any], QuoteVector]]:
    """Keylime's emulator deluxequote q1..q6 with their vectors.json entries."""
    base = vector("keylime/quote/keylime_emulator_deluxequote")
    entries: list[dict[str, Any]] = json.loads((base / "vectors.json").read_text())
    return [(e, keylime_dir_vector(base / e["dir"], base / "ak_pub.pem")) for e in entries]
