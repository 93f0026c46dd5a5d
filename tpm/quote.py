"""Quote verification (TPM2_Quote evidence) and the clock/counter progress check between rounds."""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass

from geoattest.errors import (
    ClockNotMonotonic,
    NonceMismatch,
    PcrDigestMismatch,
    PcrSelectionMismatch,
    QuoteSignatureInvalid,
    TpmFormatError,
)
from tpm.attest import Attest, ClockInfo, QuoteInfo, parse_tpms_attest
from tpm.constants import Alg
from tpm.pcr import PcrSelection, PcrValues, pcr_digest
from tpm.public import TpmPublic
from tpm.signature import parse_tpmt_signature, verify_signature

__all__ = ["ClockProgress", "QuoteResult", "check_clock_progress", "verify_quote"]


@dataclass(frozen=True, slots=True, kw_only=True)
class QuoteResult:
    """A quote that passed `verify_quote`: the parsed attestation and what it vouches for."""

    attest: Attest
    selection: PcrSelection
    pcr_digest: bytes
    hash_alg: Alg

    @property
    def clock_info(self) -> ClockInfo:
        """The quote's TPMS_CLOCK_INFO (feed it to `check_clock_progress`)."""
        return self.attest.clock_info


def verify_quote(
    *,
    ak: TpmPublic,
    attest: bytes,
    signature: bytes,
    nonce: bytes,
    pcr_values: PcrValues,
    hash_alg: Alg | None = None,
) -> QuoteResult:
    """Verify a TPM2_Quote: ``attest`` (TPMS_ATTEST) signed by ``ak`` over ``pcr_values``.

    In order: the TPMT_SIGNATURE parses and verifies under ``ak`` (and uses ``hash_alg`` when
    given) → `QuoteSignatureInvalid`; the TPMS_ATTEST parses and is a quote → `TpmFormatError`;
    extraData equals ``nonce`` → `NonceMismatch`; the quoted PCR selection is exactly the PCRs in
    ``pcr_values`` → `PcrSelectionMismatch`; the digest of those values (selection order, hashed
    with the signature's hash) equals pcrDigest → `PcrDigestMismatch`.
    """
    sig = parse_tpmt_signature(signature)
    if hash_alg is not None and sig.hash_alg is not hash_alg:
        raise QuoteSignatureInvalid(
            f"quote signed with hash {sig.hash_alg.name}, policy requires {hash_alg.name}"
        )
    verify_signature(ak, attest, sig)
    parsed = parse_tpms_attest(attest)
    info = parsed.attested
    if not isinstance(info, QuoteInfo):
        raise TpmFormatError(f"TPMS_ATTEST type is {parsed.type.name}, expected ATTEST_QUOTE")
    if not hmac.compare_digest(parsed.extra_data, nonce):
        raise NonceMismatch(
            f"quote extraData mismatch: expected {nonce.hex()}, got {parsed.extra_data.hex()}"
        )
    selection = info.pcr_selection
    quoted = {alg: idx for alg, idx in selection.banks if idx}
    sent = {alg: tuple(sorted(pcrs)) for alg, pcrs in pcr_values.items() if pcrs}
    if quoted != sent:
        raise PcrSelectionMismatch(
            f"PCR selection mismatch: quote covers {selection}, "
            f"values given for {PcrSelection.of_values(pcr_values)}"
        )
    digest = pcr_digest(pcr_values, selection, sig.hash_alg)
    if not hmac.compare_digest(digest, info.pcr_digest):
        raise PcrDigestMismatch(
            f"PCR digest mismatch over {selection}: quote has {info.pcr_digest.hex()}, "
            f"values give {digest.hex()}"
        )
    return QuoteResult(attest=parsed, selection=selection, pcr_digest=digest, hash_alg=sig.hash_alg)


class ClockProgress(enum.StrEnum):
    """How the TPM moved between two verified quotes."""

    FIRST = "first"  # no previous quote to compare with
    SAME_BOOT = "same_boot"  # same resetCount and restartCount, clock not behind
    RESTART = "restart"  # restartCount up (TPM Restart/resume), same resetCount
    REBOOT = "reboot"  # resetCount up (TPM Reset: the platform rebooted)


def check_clock_progress(previous: ClockInfo | None, current: ClockInfo) -> ClockProgress:
    """Classify the move from ``previous`` to ``current`` clock info of the same TPM.

    Raises `ClockNotMonotonic` when resetCount goes down; when, with the same resetCount,
    restartCount goes down or clock goes back; or when clock goes back across a reboot although
    the TPM reports ``safe`` (it then vouches it never reported a higher clock).
    """
    if previous is None:
        return ClockProgress.FIRST
    p, c = previous, current
    if c.reset_count < p.reset_count:
        raise ClockNotMonotonic(
            f"TPM resetCount went backwards: previous {p.reset_count}, now {c.reset_count}"
        )
    if c.reset_count > p.reset_count:
        if c.clock < p.clock and c.safe:
            raise ClockNotMonotonic(
                f"TPM clock went backwards across a reboot while safe: previous {p.clock} ms, "
                f"now {c.clock} ms"
            )
        return ClockProgress.REBOOT
    if c.restart_count < p.restart_count:
        raise ClockNotMonotonic(
            f"TPM restartCount went backwards: previous {p.restart_count}, now {c.restart_count}"
        )
    if c.clock < p.clock:
        raise ClockNotMonotonic(
            f"TPM clock went backwards: previous {p.clock} ms, now {c.clock} ms "
            f"(resetCount {c.reset_count})"
        )
    if c.restart_count > p.restart_count:
        return ClockProgress.RESTART
    return ClockProgress.SAME_BOOT
