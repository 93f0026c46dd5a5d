"""PCR reads, extends and quotes on a ``TpmConnection`` (private to ``agent.tpm_device``).

The values returned with a quote are the ones it covers: PCR_Read returns at most 8 digests per
call, so a selection is read in chunks, and the PCR update counter is compared across the chunks
and after the quote; when an extend slipped in between, the read (and quote) is retaken.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import NamedTuple, TypeVar

from tpm2_pytss.constants import ESYS_TR
from tpm2_pytss.types import TPML_DIGEST_VALUES, TPMT_HA, TPMU_HA

from agent import _pcr
from agent._pcr import PcrValues
from agent._tpm_connection import TpmConnection
from geoattest.errors import ConfigurationError, TpmCommandFailed
from geoattest.pcr_banks import PcrBank

logger = logging.getLogger(__name__)

_ATTEMPTS = 5
_T = TypeVar("_T")


class TpmQuote(NamedTuple):
    """A quote: TPMS_ATTEST bytes, marshalled TPMT_SIGNATURE, and the PCR values it covers."""

    attest: bytes
    signature: bytes
    pcrs: PcrValues


class _PcrsChanged(Exception):
    """PCRs were extended while reading or quoting (internal: the caller retries)."""


def retry_on_change(action: Callable[[], _T]) -> _T:
    """Run ``action`` until no PCR changed under it; TpmCommandFailed after 5 attempts."""
    for _ in range(_ATTEMPTS):
        try:
            return action()
        except _PcrsChanged:
            logger.debug("PCRs changed during read; retrying")
    raise TpmCommandFailed(f"PCRs kept changing during {_ATTEMPTS} attempts", rc=0)


def read_once(conn: TpmConnection, wanted: dict[PcrBank, list[int]]) -> tuple[int, PcrValues]:
    """PCR values and the update counter; raises _PcrsChanged if the counter moves between
    chunks, ConfigurationError when the TPM returns nothing for a bank (not active)."""
    values: PcrValues = {bank: {} for bank in wanted}
    remaining, counter = wanted, None
    while remaining:
        with conn.calling("PCR_Read"):
            count, selection, digests = conn.esapi.pcr_read(_pcr.to_tpml(remaining))
        got = _pcr.from_tpml(selection)
        if not any(got.values()):
            raise ConfigurationError(
                f"TPM {conn.tcti} returned no PCR values for {remaining}: bank not active?"
            )
        if counter is not None and int(count) != counter:
            raise _PcrsChanged
        counter = int(count)
        flat = [(bank, index) for bank, indices in got.items() for index in indices]
        for (bank, index), digest in zip(flat, digests, strict=True):
            values[bank][index] = bytes(digest)
        remaining = _pcr.subtract(remaining, got)
    return counter or 0, values


def extend(conn: TpmConnection, index: int, digests_by_bank: Mapping[PcrBank, bytes]) -> None:
    """PCR_Extend ``index`` with one digest per bank; ValueError on a wrong digest length."""
    values = []
    for bank, digest in digests_by_bank.items():
        alg = _pcr.bank_alg(bank)
        if len(digest) != bank.digest_size:
            raise ValueError(f"{bank} digest must be {bank.digest_size} bytes")
        values.append(TPMT_HA(hashAlg=alg, digest=TPMU_HA(**{bank.value: digest})))
    with conn.calling(f"PCR_Extend({index})"):
        conn.esapi.pcr_extend(ESYS_TR(ESYS_TR.PCR0 + index), TPML_DIGEST_VALUES(values))


def quote(
    conn: TpmConnection, ak: ESYS_TR, nonce: bytes, wanted: dict[PcrBank, list[int]]
) -> TpmQuote:
    """TPM2_Quote of ``wanted`` (normalized) with ``nonce``, plus the values it covers."""
    selection = _pcr.to_tpml(wanted)
    probe = {next(iter(wanted)): [0]} if wanted else {}

    def attempt() -> TpmQuote:
        before, values = read_once(conn, wanted) if wanted else (0, {})
        with conn.calling("Quote"):
            attest, signature = conn.esapi.quote(ak, selection, nonce)
        if probe and read_once(conn, probe)[0] != before:
            raise _PcrsChanged
        return TpmQuote(bytes(attest), bytes(signature.marshal()), values)

    return retry_on_change(attempt)
